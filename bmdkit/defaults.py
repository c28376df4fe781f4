"""The defaults that several layers share, written once; this module imports nothing.

:data:`ESTIMATOR_DEFAULTS` are defaults of :class:`bmdkit.BMDRegressor`'s
signature (which scikit-learn reads them from), of the options ``bmdkit
--help`` shows, and, for backbone, input size and contrast, of pretraining;
:data:`PRETRAINING_DEFAULTS` are those of
:func:`bmdkit.pretraining.pretrain_backbone` and ``bmdkit pretrain``;
:data:`DEMO_COHORT_SIZE` is the number of subjects of the demo cohort. Reading
them loads no torch, so that the command line's parser is built without it.

Examples
--------
>>> ESTIMATOR_DEFAULTS["backbone"], PRETRAINING_DEFAULTS["backbone"]
('resnet10t', 'resnet10t')
>>> ESTIMATOR_DEFAULTS["batch_size"], PRETRAINING_DEFAULTS["batch_size"]
(16, 64)
"""

from types import MappingProxyType

__all__ = ["DEMO_COHORT_SIZE", "ESTIMATOR_DEFAULTS", "PRETRAINING_DEFAULTS"]

#: Defaults of BMDRegressor's parameters that other places show or share (read-only).
ESTIMATOR_DEFAULTS = MappingProxyType({
    "backbone": "resnet10t", "image_size": 64, "contrast": "percentile", "max_epochs": 20,
    "batch_size": 16, "device": "cpu"})

#: Defaults of pretraining: backbone, image size and contrast the estimators', so that
#: ``pretrained=FILE`` needs no other setting; method and epochs chosen by measurement
#: (docs/pretraining.md); ``lr`` and ``weight_decay`` AdamW's (read-only).
PRETRAINING_DEFAULTS = MappingProxyType({
    **{name: ESTIMATOR_DEFAULTS[name] for name in ("backbone", "image_size", "contrast")},
    "method": "simmim", "epochs": 20, "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-4})

#: Subjects in the SYNTHETIC demo cohort: the size of the Hertfordshire Cohort Study's
#: XAttn-BMD sample that it resembles (:func:`bmdkit.datasets.load_demo_cohort`).
DEMO_COHORT_SIZE = 233
