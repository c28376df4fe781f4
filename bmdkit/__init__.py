"""bmdkit: femoral neck BMD from hip radiographs plus clinical metadata.

The estimators are scikit-learn regressors over a DataFrame of image paths
and metadata; see :class:`bmdkit.BMDRegressor`.
"""

import importlib
import os
import sys
import warnings


def _passive_openmp():
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless it is set; warn if torch is loaded already.

    OpenMP threads that spin between torch ops made training steps ~25x slower
    on a CPU shared with other processes (parallel CV workers, a busy machine):
    docs/performance.md. OpenMP reads the variable once, when torch loads, so
    it is set here, before bmdkit imports torch; a process that imported torch
    first keeps spinning (the warning says so), while processes it starts
    inherit the variable.
    """
    if "OMP_WAIT_POLICY" in os.environ:  # the user's choice
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if "torch" in sys.modules:
        warnings.warn(
            "bmdkit sets OMP_WAIT_POLICY=PASSIVE, but torch was imported before bmdkit, so it "
            "cannot take effect in this process: OpenMP threads spin-wait, which can make "
            "training many times slower on shared CPUs. Set OMP_WAIT_POLICY=PASSIVE (or ACTIVE "
            "to keep spinning) in the environment, or import bmdkit before torch; see "
            "docs/performance.md", RuntimeWarning, stacklevel=3)


_passive_openmp()

#: Public name -> module defining it, imported on first use (PEP 562): importing a
#: light module such as ``bmdkit.clinical`` or ``bmdkit.io`` (what decoding worker
#: processes do) does not load torch and timm.
_EXPORTS = {
    "load_cohort": "bmdkit.datasets", "load_demo_cohort": "bmdkit.datasets",
    "BMDRegressor": "bmdkit.estimators", "ConcatBMDRegressor": "bmdkit.estimators",
    "DAFTBMDRegressor": "bmdkit.estimators", "GatedBMDRegressor": "bmdkit.estimators",
    "ImageOnlyBMDRegressor": "bmdkit.estimators", "LateFusionBMDRegressor": "bmdkit.estimators",
    "MetadataOnlyBMDRegressor": "bmdkit.estimators", "XAttnBMDRegressor": "bmdkit.estimators",
    "BMDStratifiedGroupKFold": "bmdkit.model_selection",
    "BMDStratifiedKFold": "bmdkit.model_selection",
    "RepeatedBMDStratifiedKFold": "bmdkit.model_selection",
    "load": "bmdkit.estimators",  # persistence.load, with the built-in estimators registered
}


def __getattr__(name):
    if name == "__version__":  # read on first use: importlib.metadata takes ~0.1 s to import
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("bmdkit")
        except PackageNotFoundError:  # running from a source tree without installation
            value = "0.0.0+unknown"
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:  # a submodule, e.g. bmdkit.metrics, as an attribute as before the imports were lazy
        try:
            value = importlib.import_module(f"bmdkit.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"bmdkit.{name}":
                raise
            raise AttributeError(f"module 'bmdkit' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


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
