"""Optional dependencies: what ``pip install "bmdkit[EXTRA]"`` adds, and the error when missing.

========================  ==============================================================
extra                     brings, for
========================  ==============================================================
``tune``                  optuna, optuna-integration: :mod:`bmdkit.tuning`, ``bmdkit tune``
``archive``               pyarrow: Parquet output of ``bmdkit predict``
``distributed``           Dask, psycopg, Accelerate: :mod:`bmdkit.scaleout`
``dicom-node``            highdicom, pynetdicom, fhir.resources: :mod:`bmdkit.dicomnode`,
                          ``bmdkit serve``, ``bmdkit predict --sr-dir/--fhir-dir``
``pretrain``              lightly: :mod:`bmdkit.pretraining`, ``bmdkit pretrain``
========================  ==============================================================

The compressed-DICOM codecs (python-gdcm, pylibjpeg) are not an extra: reading
clinical DICOM archives is what bmdkit is for, and they weigh little beside torch.
"""

from __future__ import annotations

from bmdkit.errors import BMDKitError

__all__ = ["MissingExtraError"]


class MissingExtraError(BMDKitError, ModuleNotFoundError):
    """A module of an optional extra is not installed; the message says what to install.

    Parameters
    ----------
    extra : str
        The extra bringing the module, e.g. ``"tune"``.
    feature : str
        What needs it, e.g. ``"bmdkit.tuning"``.
    module : str
        The missing module, e.g. ``"optuna"``.

    Examples
    --------
    >>> error = MissingExtraError("tune", "bmdkit.tuning", "optuna")
    >>> print(error)
    bmdkit.tuning needs optuna, which is not installed: pip install "bmdkit[tune]"
    >>> isinstance(error, ImportError), error.name, error.extra
    (True, 'optuna', 'tune')
    """

    def __init__(self, extra, feature, module):
        super().__init__(f'{feature} needs {module}, which is not installed: '
                         f'pip install "bmdkit[{extra}]"', name=module)
        self.extra = extra
