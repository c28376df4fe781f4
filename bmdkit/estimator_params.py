"""What BMDRegressor's parameters accept, and the signatures of its subclasses.

:data:`CONSTRAINTS` is the one declared table of the estimator's parameters
(:mod:`bmdkit.params`: an interval, options, a type, or a check that needs a
library), which ``BMDRegressor._parameter_constraints`` is and its subclasses
extend; ``tests/test_params.py`` fails for a parameter without an entry and
derives its bad-type and bad-value cases from the table. :func:`signature_of`
and :func:`named_init` give a subclass taking ``**kwargs`` the signature that
scikit-learn reads its parameter names from; :func:`named_model` makes the
named estimators (``XAttnBMDRegressor`` ...) from the fusion registry.
"""

from __future__ import annotations

import inspect
import os
from numbers import Integral, Real

import numpy as np

from bmdkit.batching import check_device
from bmdkit.errors import ParameterError
from bmdkit.inference import MISSING_IMAGE_POLICIES
from bmdkit.io.transforms import CONTRASTS
from bmdkit.nn import PRECISIONS, fusion_class
from bmdkit.nn.backbones import check_backbone, check_tiles
from bmdkit.params import Check, Interval, Options
from bmdkit.registry import FUSIONS, LOSSES

__all__ = ["CONSTRAINTS", "LR_SCHEDULES", "named_init", "named_model", "signature_of"]

LR_SCHEDULES = ("cosine", None)


def _column_names(value):
    """A ParameterError unless ``value`` is a list-like of column names (not one string)."""
    if isinstance(value, str) or not all(isinstance(name, str) for name in value):
        raise ParameterError(f"expected a list of column names, got {value!r}")


def _thresholds(value):
    """A ParameterError unless ``value`` is a sequence of BMD thresholds (None: no threshold)."""
    if isinstance(value, str) or not all(
            name is None or Interval(Real, None, None).accepts(name) for name in value):
        raise ParameterError(f"expected a sequence of numbers or None, got {value!r}")


#: What each parameter of :class:`bmdkit.BMDRegressor` accepts.
CONSTRAINTS = {
    "fusion": [Check(fusion_class, FUSIONS.allowed, ("no_such_fusion",))],
    "image_col": [str, None],
    "numeric_cols": [None, Check(_column_names, "a list of column names", ("age",))],
    "categorical_cols": [None, Check(_column_names, "a list of column names", ("sex",))],
    "backbone": [Check(check_backbone, "a timm model name (see timm.list_models())",
                       (12345, "no_such_net"))],
    "pretrained": [bool, str, os.PathLike],
    "image_size": [Interval(Integral, 1, None)],
    "image_tiles": [Check(check_tiles, "a pair (rows, cols) of positive integers",
                          ((2, 0), "2x2"))],
    "embed_dim": [Interval(Integral, 1, None)],
    "n_heads": [Interval(Integral, 1, None)],
    "n_layers": [Interval(Integral, 1, None)],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "augment": [bool],
    "modality_dropout": [Interval(Real, 0, 1, closed="left")],
    "missing_image": [Options(MISSING_IMAGE_POLICIES)],
    "freeze_backbone": [bool],
    "precision": [Options(PRECISIONS)],
    "channels_last": [bool],
    "compile": [bool],
    "contrast": [Options(CONTRASTS)],
    "cache_dir": [None, str, os.PathLike],
    "loss": [Check(LOSSES.entry, LOSSES.allowed, ("no_such_loss",))],
    "smooth_l1_beta": [Interval(Real, 0, None, closed="neither")],
    "lds_bins": [Interval(Integral, 1, None)],
    "lds_sigma": [Interval(Real, 0, None, closed="neither")],
    "lds_power": [Interval(Real, 0, 1)],
    "max_weight_ratio": [Interval(Real, 1, None)],
    "low_bmd_threshold": [None, Interval(Real, None, None),
                          Check(_thresholds, "a sequence of numbers or None (one per site)",
                                ("low",))],
    "low_bmd_weight": [Interval(Real, 0, None, closed="neither")],
    "max_epochs": [Interval(Integral, 1, None)],
    "batch_size": [Interval(Integral, 1, None)],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "weight_decay": [Interval(Real, 0, None)],
    "lr_schedule": [Options(LR_SCHEDULES)],
    "early_stopping": [bool],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(Integral, 1, None)],
    "callbacks": [None, list, tuple],
    "random_state": [None, Interval(Integral, 0, 2**32 - 1), np.random.RandomState],
    "device": [Check(check_device, "a torch device that torch sees, such as 'cpu', 'cuda' "
                                   "or 'cuda:1'", ("nonsense", 3))],
    "n_threads": [None, Interval(Integral, 1, None)],
    "verbose": [bool, Interval(Integral, 0, None)],
    "checkpoint_dir": [None, str, os.PathLike],
}


def signature_of(base, *, drop=(), add=None):
    """``base.__init__``'s signature less ``drop``, plus keyword-only ``add`` (name: default).

    scikit-learn reads an estimator's parameter names from its ``__init__``
    signature, so a subclass taking ``**kwargs`` declares them this way.
    """
    signature = inspect.signature(base.__init__)
    params = [p for name, p in signature.parameters.items() if name not in drop]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
               for name, default in (add or {}).items()]
    return signature.replace(parameters=params)


def named_init(base, fusion, **defaults):
    """``__init__`` of a named model: ``base``'s parameters less ``fusion``, ``defaults`` changed."""
    signature = signature_of(base, drop=("fusion",))
    signature = signature.replace(parameters=[
        p.replace(default=defaults[name]) if name in defaults else p
        for name, p in signature.parameters.items()])

    def __init__(self, **kwargs):
        bound = signature.bind(self, **kwargs)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = signature
    changed = "".join(f", {k}={v!r} by default" for k, v in defaults.items())
    __init__.__doc__ = f"Same parameters as BMDRegressor, with fusion={fusion!r} fixed{changed}."
    return __init__


def named_model(base, fusion, module):
    """The subclass of ``base`` with the registered ``fusion`` fixed, as the registry describes
    it (:data:`bmdkit.registry.FUSIONS`: class name, summary, changed defaults), defined as
    if in ``module`` (where persistence and pickle look for it)."""
    entry = FUSIONS.entry(fusion)
    changed = "".join(f" and ``{k}={v!r}`` by default" for k, v in entry.estimator_defaults.items())
    doc = (f"{entry.summary}\n\n    Same parameters as :class:`{base.__name__}`, with "
           f"``fusion={fusion!r}`` fixed{changed}.\n    ")
    return type(entry.estimator, (base,), {
        "__module__": module, "__qualname__": entry.estimator, "__doc__": doc, "fusion": fusion,
        "__init__": named_init(base, fusion, **entry.estimator_defaults)})
