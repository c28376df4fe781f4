"""bmdkit: femoral neck BMD from hip radiographs plus clinical metadata.

The estimators are scikit-learn regressors over a DataFrame of image paths
and metadata; see :class:`bmdkit.BMDRegressor`.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# OpenMP threads that spin between torch ops made training steps ~25x slower on a CPU shared
# with other processes (parallel CV workers, a busy machine): docs/performance.md. The
# variable is read when torch loads, so it is set here, before bmdkit imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bmdkit.datasets import load_cohort, load_demo_cohort
from bmdkit.estimators import (
    BMDRegressor,
    ConcatBMDRegressor,
    DAFTBMDRegressor,
    GatedBMDRegressor,
    ImageOnlyBMDRegressor,
    LateFusionBMDRegressor,
    MetadataOnlyBMDRegressor,
    XAttnBMDRegressor,
)
from bmdkit.model_selection import (
    BMDStratifiedGroupKFold,
    BMDStratifiedKFold,
    RepeatedBMDStratifiedKFold,
)
from bmdkit.persistence import load

from bmdkit import clinical, evaluation, metrics, report, tuning  # isort: skip

try:
    __version__ = version("bmdkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "BMDRegressor",
    "BMDStratifiedGroupKFold",
    "BMDStratifiedKFold",
    "ConcatBMDRegressor",
    "DAFTBMDRegressor",
    "GatedBMDRegressor",
    "ImageOnlyBMDRegressor",
    "LateFusionBMDRegressor",
    "MetadataOnlyBMDRegressor",
    "RepeatedBMDStratifiedKFold",
    "XAttnBMDRegressor",
    "__version__",
    "clinical",
    "evaluation",
    "load",
    "load_cohort",
    "load_demo_cohort",
    "metrics",
    "report",
    "tuning",
]
