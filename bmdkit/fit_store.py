"""A folder of finished cross-validation fits, so that a long comparison survives a crash.

:class:`FitStore` keeps each finished fit (one model on one fold of one
repeat) as a file of its own, written whole or not at all as soon as the fit
ends (in the worker process that ran it), and keyed by what determines it:
the model's parameters, the fold's row positions and a fingerprint of the
data (:mod:`bmdkit.fingerprints`). :func:`bmdkit.folds.run_folds` asks the store before it fits and skips
every fit it holds, so a comparison killed at any moment and run again with
the same ``checkpoint_dir`` (:func:`bmdkit.evaluation.compare_models`,
``bmdkit cv | demo | ablation --resume``) refits only what was not finished
and ends with the results of an uninterrupted run.

A store refuses, with :class:`StoreMismatchError`, to resume against other
data, other folds, or a model of the same name with other parameters: it
never mixes fits of two different comparisons. :func:`stop_on_signals` turns
SIGINT and SIGTERM into :class:`FitsInterrupted` while fits run, an exception
skorch does not swallow (it ends training quietly on ``KeyboardInterrupt``),
so that an interrupted fit is never stored as a finished one.

This module works on arrays and tables only; it never imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from bmdkit.errors import SavedFileError
from bmdkit.files import atomic_path, write_text
from bmdkit.fingerprints import data_fingerprint, model_key

__all__ = ["FitStore", "FitsInterrupted", "StoreMismatchError", "finished_fits",
           "stop_on_signals"]

#: Version of the store's layout; a store of another version is refused.
STORE_VERSION = 1
MANIFEST = "manifest.json"


class StoreMismatchError(SavedFileError):
    """The store holds fits of other data, folds or model settings than those asked for."""


class FitsInterrupted(BaseException):  # noqa: N818 -- not an error: a request to stop
    """SIGINT or SIGTERM arrived while fits ran (see :func:`stop_on_signals`).

    A ``BaseException`` that is not ``KeyboardInterrupt``: skorch ends
    training without an error on ``KeyboardInterrupt``, which would let an
    interrupted fit pass for a finished one.

    Attributes
    ----------
    signum : int
        The signal received.
    """

    def __init__(self, signum):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """Within the block, ``signals`` raise :class:`FitsInterrupted`; the old handlers after.

    Outside the main thread (where Python cannot set handlers) the block runs as is.

    Examples
    --------
    >>> import os, signal
    >>> try:
    ...     with stop_on_signals():
    ...         os.kill(os.getpid(), signal.SIGTERM)
    ... except FitsInterrupted as stop:
    ...     print(stop)
    stopped by SIGTERM
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise FitsInterrupted(signum)

    previous = {signum: signal.signal(signum, stop) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def finished_fits(path):
    """How many finished fits the store at ``path`` holds (0 where there is none)."""
    fits = Path(path) / "fits"
    return sum(1 for _ in fits.glob("*.npz")) if fits.is_dir() else 0


def _fold_key(train, test):
    return joblib.hash((np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)))


@dataclass(frozen=True)
class StoredFit:
    """What a store keeps of one finished fit."""

    y_pred: np.ndarray | None
    score: float | None
    fit_time: float


class FitStore:
    """Finished fits of one comparison under a folder, reused when it runs again.

    Parameters
    ----------
    path : str or Path
        The folder (created when needed): ``manifest.json`` (the data
        fingerprint, and each model's key and folds) and ``fits/<key>.npz``,
        one per finished fit.
    X, y
        The data of the comparison (only their :func:`data_fingerprint` is kept).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> X = np.arange(20.0).reshape(10, 2); y = X[:, 0]
    >>> store = FitStore(tempfile.mkdtemp(), X, y)
    >>> splits = [(np.arange(5), np.arange(5, 10)), (np.arange(5, 10), np.arange(5))]
    >>> store.open({"ridge": Ridge()}, splits)
    >>> key = store.key("ridge", splits[0])
    >>> store.get(key) is None
    True
    >>> store.put(key, StoredFit(np.ones(5), None, 0.1))
    >>> store.get(key).y_pred.tolist(), len(store)
    ([1.0, 1.0, 1.0, 1.0, 1.0], 1)
    >>> FitStore(store.path, X, y + 1).open({"ridge": Ridge()}, splits)
    Traceback (most recent call last):
    ...
    bmdkit.fit_store.StoreMismatchError: ...
    """

    def __init__(self, path, X, y):
        self.path = Path(path)
        self.data = data_fingerprint(X, y)
        self._models = {}

    @property
    def fits(self):
        """The folder of the finished fits."""
        return self.path / "fits"

    def __len__(self):
        return finished_fits(self.path)

    def open(self, models, splits):
        """Check the folder against this comparison and record it (else StoreMismatchError).

        A folder without a manifest is a new store. One that holds another
        data fingerprint, other folds, or a model of one of these names with
        other parameters is refused, naming what differs; models it does not
        know yet are added.
        """
        keys = {name: model_key(model) for name, model in models.items()}
        folds = joblib.hash([_fold_key(train, test) for train, test in splits])
        manifest = self._read_manifest()
        if manifest is not None:
            self._check(manifest, keys, folds)
            keys = {**manifest["models"], **keys}
        self.fits.mkdir(parents=True, exist_ok=True)
        write_text(self.path / MANIFEST, json.dumps(
            dict(version=STORE_VERSION, data=self.data, folds=folds, models=keys), indent=2))
        self._models = keys

    def _read_manifest(self):
        path = self.path / MANIFEST
        existing = next(p for p in (self.path, *self.path.absolute().parents) if p.exists())
        if not existing.is_dir():  # the store or a folder above it (cv --out) is a file
            raise StoreMismatchError(f"{existing} is a file, not a folder: the fits cannot be "
                                     f"stored in {self.path}; choose another folder")
        if not path.is_file():
            if self.path.is_dir() and any(self.path.iterdir()):
                raise StoreMismatchError(
                    f"{self.path} is not empty and holds no {MANIFEST}: not a store of fits; "
                    "choose another folder")
            return None
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise StoreMismatchError(f"{path} is not valid JSON ({error}): the store is damaged; "
                                     "choose another folder") from None
        if not isinstance(manifest, dict) or not {"data", "folds", "models"} <= set(manifest):
            raise StoreMismatchError(f"{path} is not a manifest of fits (it lacks data, folds or "
                                     "models); choose another folder")
        return manifest

    def _check(self, manifest, keys, folds):
        where = f"the fits stored in {self.path}"
        if manifest.get("version") != STORE_VERSION:
            raise StoreMismatchError(f"{where} are of store version {manifest.get('version')}, "
                                     f"this bmdkit writes version {STORE_VERSION}")
        if manifest["data"] != self.data:
            raise StoreMismatchError(
                f"{where} were fitted on other data (the rows, columns or targets differ): "
                "resume with the data of the first run, or choose another folder")
        if manifest["folds"] != folds:
            raise StoreMismatchError(
                f"{where} were fitted on other folds (the number of folds, repeats, groups or "
                "seed differ): resume with the settings of the first run, or choose another "
                "folder")
        changed = [name for name, key in keys.items()
                   if name in manifest["models"] and manifest["models"][name] != key]
        if changed:
            raise StoreMismatchError(
                f"{where} were fitted with other parameters for model(s) {changed}: resume with "
                "the settings of the first run, or choose another folder")

    def key(self, name, split):
        """The key of model ``name`` (as given to :meth:`open`) fitted on ``split`` (train, test)."""
        return hashlib.sha256(
            f"{self._models[name]}:{_fold_key(*split)}:{self.data}".encode()).hexdigest()

    def get(self, key):
        """The :class:`StoredFit` of ``key``, or None when it is not finished."""
        path = self.fits / f"{key}.npz"
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as saved:
            return StoredFit(saved["y_pred"] if bool(saved["has_pred"]) else None,
                             float(saved["score"]) if bool(saved["has_score"]) else None,
                             float(saved["fit_time"]))

    def guard(self):
        """The context fits run in: SIGINT and SIGTERM raise :class:`FitsInterrupted`."""
        return stop_on_signals()

    def put(self, key, fit):
        """Write ``fit`` (with ``y_pred``, ``score`` and ``fit_time``, e.g. a
        :class:`~bmdkit.folds.FoldResult`) as the fit of ``key``, whole or not at all."""
        with atomic_path(self.fits / f"{key}.npz") as tmp, open(tmp, "wb") as file:
            np.savez(file, y_pred=np.empty(0) if fit.y_pred is None else fit.y_pred,
                     has_pred=fit.y_pred is not None,
                     score=np.nan if fit.score is None else fit.score,
                     has_score=fit.score is not None, fit_time=fit.fit_time)
