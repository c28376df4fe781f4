"""Self-supervised pretraining of the image backbone on unlabelled radiographs.

``bmdkit pretrain`` / :func:`pretrain_backbone` teach a timm backbone from
the radiographs that have no DXA scan beside them, and save it as a weights
file that every estimator takes as ``pretrained="weights.safetensors"``
(docs/pretraining.md). The objectives are SimMIM (the default; its decoder
and loss ours) and SimCLR (lightly's head and loss); the multi-view transform
is lightly's, the views made for radiographs (:mod:`~bmdkit.pretraining.views`).
"""

from bmdkit.extras import MissingExtraError

try:
    import lightly  # noqa: F401  (the pretrain extra)
except ModuleNotFoundError as error:
    raise MissingExtraError("pretrain", "bmdkit.pretraining", error.name) from error

from bmdkit.pretraining.methods import METHODS  # noqa: E402
from bmdkit.pretraining.train import (  # noqa: E402
    DEFAULTS,
    check_out,
    pretrain_backbone,
    resume_path,
)
from bmdkit.pretraining.views import radiograph_views  # noqa: E402

__all__ = ["DEFAULTS", "METHODS", "check_out", "pretrain_backbone", "radiograph_views",
           "resume_path"]
