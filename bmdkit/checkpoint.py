"""A fit that survives being killed: its whole training state saved after every epoch.

:class:`EpochCheckpoint` is a skorch callback (in the manner of skorch's
``Checkpoint`` and ``LoadInitState``, in one file written whole): after each
epoch it saves the weights, the optimiser, the history, the learning-rate
scheduler, early stopping (its best epoch, best weights and patience count),
the best score of each scoring callback and the fit's random generators (:class:`bmdkit.rng.FitRandomness`) to
one file under its folder, through :func:`bmdkit.files.atomic_path`; when
training begins it restores all of them. A fit killed at any moment and run
again from its last epoch therefore ends with the weights of an
uninterrupted fit (on CPU, same seed and thread count).

A checkpoint belongs to one fit: its file is named by a digest of the
estimator's parameters and the data (:func:`fit_fingerprint`,
:mod:`bmdkit.fingerprints`), so it is restored only for the same fit, and
the fits of several folds (in parallel too) or settings keep theirs side by
side in one folder. ``BMDRegressor(checkpoint_dir=...)`` uses it through
:func:`checkpoint_callbacks` and :func:`epochs_left`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.history import History

from bmdkit.errors import FileClashError, SavedFileError
from bmdkit.files import atomic_path
from bmdkit.fingerprints import data_fingerprint, model_key

__all__ = ["CHECKPOINT_GLOB", "EpochCheckpoint", "checkpoint_callbacks", "checkpoint_path",
           "epochs_left", "fit_fingerprint", "load_state"]

#: The checkpoint files in a ``checkpoint_dir``: one per fit (parameters and data).
CHECKPOINT_GLOB = "checkpoint-*.pt"
#: Early stopping's state that a resumed fit continues from.
_EARLY_STOPPING_STATE = ("misses_", "dynamic_threshold_", "best_epoch_", "best_model_weights_")


def load_state(path, what, advice, check=None):
    """Load a training state saved by ``torch.save`` safely (``weights_only``).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    what : str
        What the file is, for the error ("checkpoint", "resume file").
    advice : str
        What to do about a damaged file, for the error.
    check : callable, optional
        Called with the loaded state (it may decode parts of it in place); a
        ``KeyError``, ``TypeError`` or ``ValueError`` it raises marks the file
        as not a bmdkit state.

    Returns
    -------
    state : dict

    Raises
    ------
    SavedFileError
        The file is damaged or not a bmdkit state; the error names it.

    Examples
    --------
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "state.pt"
    >>> torch.save({"epochs_done": 2}, path)
    >>> load_state(path, "resume file", "delete it", lambda s: s["epochs_done"])
    {'epochs_done': 2}
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if check is not None:
            check(state)
    except (RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.PickleError) as error:
        raise SavedFileError(f"{what} {path} is damaged or not a bmdkit {what} (torch.load: "
                             f"{type(error).__name__}); {advice}") from None
    return state


class EpochCheckpoint(Callback):
    """Save the training state after every epoch; restore it when training begins.

    Place it after every callback whose state it keeps (``LRScheduler``,
    ``EarlyStopping``): it restores them once they have set themselves up.

    Parameters
    ----------
    dirname : str or Path
        Folder of the checkpoint (created when needed); fits of other
        parameters or data keep theirs there side by side.
    fingerprint : str
        What the fit is (:func:`fit_fingerprint`): it names the checkpoint's
        file (:func:`checkpoint_path`).
    generators : sequence of torch.Generator, default=()
        Random generators the training draws from, saved and restored.

    Attributes
    ----------
    resumed_epochs_ : int
        Epochs of the checkpoint found (0: none), after :meth:`read`.
    """

    def __init__(self, dirname, fingerprint, generators=()):
        self.dirname = dirname
        self.fingerprint = fingerprint
        self.generators = generators

    @property
    def path(self):
        return checkpoint_path(self.dirname, self.fingerprint)

    def initialize(self):
        self.state_ = None
        self.resumed_epochs_ = 0
        return self

    def read(self):
        """Read the checkpoint (once); the epochs it holds (0 without one).

        A damaged file (checkpoints are written whole or not at all, so only
        by something else) is a SavedFileError naming it.
        """
        if self.state_ is None and self.path.is_file():
            self.state_ = load_state(self.path, "checkpoint", "delete it to start this fit again",
                                     _decode_history)
            self.resumed_epochs_ = len(self.state_["history"])
        return self.resumed_epochs_

    def on_train_begin(self, net, **kwargs):
        self.read()
        state = self.state_
        if state is None:
            return
        if net.verbose:
            print(f"Resuming from epoch {self.resumed_epochs_} ({self.path}).")
        net.module_.load_state_dict(state["module"])
        net.optimizer_.load_state_dict(state["optimizer"])
        net.history_ = History(state["history"])
        for generator, saved in zip(self.generators, state["generators"]):
            generator.set_state(saved)
        for name, callback in net.callbacks_:
            saved = state["callbacks"].get(name)
            if saved is None:
                continue
            if isinstance(callback, LRScheduler):
                callback.lr_scheduler_.load_state_dict(saved)
                callback.batch_idx_ = sum(net.history[:, "train_batch_count"])
            else:  # early stopping's patience and best weights; a scoring's best score
                vars(callback).update(saved)

    def on_epoch_end(self, net, **kwargs):
        callbacks = {}
        for name, callback in net.callbacks_:
            if isinstance(callback, LRScheduler) and callback.lr_scheduler_ is not None:
                callbacks[name] = callback.lr_scheduler_.state_dict()
            elif isinstance(callback, EarlyStopping):
                callbacks[name] = {key: getattr(callback, key) for key in _EARLY_STOPPING_STATE}
                callbacks[name]["dynamic_threshold_"] = float(callback.dynamic_threshold_)
                callbacks[name]["best_epoch_"] = int(callback.best_epoch_)
            elif hasattr(callback, "best_score_"):  # skorch's scorings: "<name>_best" in history
                callbacks[name] = {"best_score_": float(callback.best_score_)}
        state = dict(fingerprint=self.fingerprint, module=net.module_.state_dict(),
                     optimizer=net.optimizer_.state_dict(),
                     history=json.dumps(net.history.to_list(), default=float),
                     generators=[generator.get_state() for generator in self.generators],
                     callbacks=callbacks)
        Path(self.dirname).mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)


def _decode_history(state):
    """Decode the history of a checkpoint's ``state`` (saved as JSON) in place, once.

    A ``TypeError`` or ``ValueError`` if it is no list of epochs (:func:`load_state`).
    """
    state["history"] = json.loads(state["history"])
    if not isinstance(state["history"], list):
        raise TypeError("the history is no list of epochs")


def checkpoint_callbacks(estimator, X, y, rng):
    """``[("checkpoint", EpochCheckpoint)]`` for an estimator with a ``checkpoint_dir``, else [].

    Parameters
    ----------
    estimator : BMDRegressor
    X, y
        The data it is fitted on (their fingerprint is the checkpoint's).
    rng : bmdkit.rng.FitRandomness
        The fit's generators, saved with each epoch.
    """
    folder = estimator.checkpoint_dir
    if folder is None:
        return []
    if Path(folder).exists() and not Path(folder).is_dir():
        raise FileClashError(f"checkpoint_dir {folder} is a file: give a folder")
    return [("checkpoint", EpochCheckpoint(folder, fit_fingerprint(estimator, X, y),
                                           (rng.cpu, rng.modules)))]


def fit_fingerprint(estimator, X, y):
    """What a fit is: the estimator's parameters and the data (:mod:`bmdkit.fingerprints`)."""
    return f"{model_key(estimator)}:{data_fingerprint(X, y)}"


def checkpoint_path(folder, fingerprint):
    """The checkpoint file of the fit ``fingerprint`` in ``folder`` (:data:`CHECKPOINT_GLOB`).

    Examples
    --------
    >>> checkpoint_path("ckpt", "a:b").name
    'checkpoint-6783a31eabf68ccc.pt'
    """
    return Path(folder) / f"checkpoint-{hashlib.sha256(fingerprint.encode()).hexdigest()[:16]}.pt"


def epochs_left(net, max_epochs):
    """Epochs still to train: ``max_epochs`` less those of the checkpoint the net resumes."""
    for _, callback in net.callbacks_:
        if isinstance(callback, EpochCheckpoint):
            return max(max_epochs - callback.read(), 0)
    return max_epochs
