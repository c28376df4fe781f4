"""bmdkit: femoral neck BMD from hip radiographs plus clinical metadata.

The estimators are scikit-learn regressors over a DataFrame of image paths
and metadata; see :class:`bmdkit.BMDRegressor`.
"""

from importlib.metadata import PackageNotFoundError, version

from bmdkit.datasets import load_cohort, load_demo_cohort
from bmdkit.estimators import (
    BMDRegressor,
    ConcatBMDRegressor,
    ImageOnlyBMDRegressor,
    MetadataOnlyBMDRegressor,
    XAttnBMDRegressor,
)
from bmdkit.model_selection import (
    BMDStratifiedGroupKFold,
    BMDStratifiedKFold,
    RepeatedBMDStratifiedKFold,
)
from bmdkit.persistence import load

from bmdkit import clinical, evaluation, metrics, report  # isort: skip

try:
    __version__ = version("bmdkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "BMDRegressor",
    "BMDStratifiedGroupKFold",
    "BMDStratifiedKFold",
    "ConcatBMDRegressor",
    "ImageOnlyBMDRegressor",
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
]
