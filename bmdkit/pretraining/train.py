"""The pretraining run: images through the decode cache, epochs, a resumable state."""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bmdkit.batching import torch_threads
from bmdkit.checkpoint import load_state
from bmdkit.defaults import PRETRAINING_DEFAULTS
from bmdkit.errors import (
    FileClashError,
    InputError,
    MissingFileError,
    ParameterError,
    SavedFileError,
)
from bmdkit.estimator_params import CONSTRAINTS
from bmdkit.files import atomic_path
from bmdkit.fingerprints import data_fingerprint
from bmdkit.io import load_images
from bmdkit.nn.backbones import create_backbone
from bmdkit.nn.weights import save_backbone_weights
from bmdkit.params import check_param, validate_params
from bmdkit.pretraining.methods import make_method
from bmdkit.pretraining.views import radiograph_views

__all__ = ["DEFAULTS", "check_out", "pretrain_backbone", "resume_path"]

#: The defaults of :func:`pretrain_backbone` and ``bmdkit pretrain``:
#: :data:`bmdkit.defaults.PRETRAINING_DEFAULTS` (backbone, image size and contrast the
#: estimators').
DEFAULTS = PRETRAINING_DEFAULTS
#: Settings a resumed run must share with the run that wrote the state.
_SAME_ON_RESUME = ("backbone", "image_size", "contrast", "method", "batch_size", "lr",
                   "weight_decay", "random_state", "n_images", "images", "views")


def resume_path(out):
    """Where a run writing ``out`` keeps its state after each epoch: ``OUT.resume.pt``."""
    return Path(f"{os.fspath(out)}.resume.pt")


class _Views(torch.utils.data.Dataset):
    """Random views of each image of an ``(n, H, W)`` array."""

    def __init__(self, images, transform):
        self.images = images
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(torch.from_numpy(np.asarray(self.images[i]))[None])


def pretrain_backbone(paths, out, *, backbone=DEFAULTS["backbone"],
                      image_size=DEFAULTS["image_size"], method=DEFAULTS["method"],
                      epochs=DEFAULTS["epochs"], batch_size=DEFAULTS["batch_size"],
                      lr=DEFAULTS["lr"], weight_decay=DEFAULTS["weight_decay"],
                      contrast=DEFAULTS["contrast"], views=None, cache_dir=None, resume=False,
                      overwrite=False, random_state=0, n_threads=None, progress=True):
    """Pretrain a timm backbone on unlabelled radiographs and save it for the estimators.

    Self-supervised: two random radiograph views of each image
    (:func:`~bmdkit.pretraining.views.radiograph_views`) and an objective
    (:data:`~bmdkit.pretraining.methods.METHODS`: by default SimMIM, filling
    in masked patches of each view) teach the backbone what radiographs of
    hips look like. Images are decoded once through
    :func:`bmdkit.io.load_images` (its memory and disk caches).
    After every epoch the run's state is written to :func:`resume_path`
    (atomically), so a killed run continues with ``resume=True``; the state is
    deleted once ``out`` is written. A progress bar shows the loss and the
    time left.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Radiographs (any format :func:`bmdkit.io.read_image` reads); no labels.
    out : str or os.PathLike
        The weights file to write (``.safetensors``, :mod:`bmdkit.nn.weights`):
        ``pretrained=out`` in any estimator.
    backbone : str, default="resnet10t"
        timm model name; the default is the estimators'.
    image_size : int, default=64
        Side of the square input; the default is the estimators'.
    method : {"simmim", "simclr"}, default="simmim"
        The objective (:data:`~bmdkit.pretraining.methods.METHODS`).
    epochs : int, default=20
    batch_size : int, default=64
        Images per step (two views each); at most the number of images.
    lr, weight_decay : float, default=1e-3, 1e-4
        AdamW's.
    contrast : str, default="percentile"
        Contrast normalisation (:func:`bmdkit.io.normalise_contrast`), the estimators'.
    views : dict or None, default=None
        Keyword arguments of :func:`~bmdkit.pretraining.views.radiograph_views`
        (e.g. ``{"window": 0, "gamma": 1}``: no intensity changes); ``None``: its defaults.
    cache_dir : str or None, default=None
        Disk cache of decoded images (see :func:`bmdkit.io.load_images`).
    resume : bool, default=False
        Continue from the state a killed run left (its settings must match),
        if there is one; without it a run starts afresh.
    overwrite : bool, default=False
        Replace an existing ``out``; without it an existing file is refused.
    random_state : int, default=0
        Seeds the weights, the batches and the views (per epoch, so a resumed
        run draws what the uninterrupted one would have).
    n_threads : int or None, default=None
        torch threads (``None``: torch's setting).
    progress : bool, default=True
        Show the progress bar.

    Returns
    -------
    dict
        What the file records (:func:`bmdkit.nn.weights.backbone_file_metadata`)
        plus ``losses`` (mean loss per epoch) and ``seconds`` (this call's wall time).

    Examples
    --------
    >>> import tempfile, os
    >>> from bmdkit.datasets import make_synthetic_cohort
    >>> folder = tempfile.mkdtemp()
    >>> X, _ = make_synthetic_cohort(n=8, image_size=48, random_state=5,
    ...                              out_dir=folder)  # SYNTHETIC phantoms
    >>> info = pretrain_backbone(X.image_path, os.path.join(folder, "w.safetensors"),
    ...                          image_size=32, epochs=1, batch_size=4, progress=False)
    >>> info["backbone"], info["image_size"], len(info["losses"])
    ('resnet10t', 32, 1)
    """
    start = time.perf_counter()
    check_out(out, overwrite=overwrite)
    paths = [os.fspath(p) for p in paths]
    # every setting is checked before any image is decoded, with the estimators' constraints
    check_param("epochs", epochs, *CONSTRAINTS["max_epochs"])
    validate_params(CONSTRAINTS, dict(backbone=backbone, image_size=image_size,
                                      contrast=contrast, batch_size=batch_size, lr=lr,
                                      weight_decay=weight_decay, n_threads=n_threads))
    view_options = set(inspect.signature(radiograph_views).parameters) - {"image_size"}
    if set(views or {}) - view_options:
        raise ParameterError(f"views must have keys among {sorted(view_options)}, got "
                             f"{sorted(set(views) - view_options)}")
    view_transform = radiograph_views(image_size, **dict(views or {}))
    if len(paths) < 2:
        raise InputError(f"pretraining needs at least 2 images, got {len(paths)}")
    settings = dict(backbone=backbone, image_size=int(image_size), contrast=contrast,
                    method=method, batch_size=int(min(batch_size, len(paths))), lr=float(lr),
                    weight_decay=float(weight_decay), random_state=int(random_state),
                    n_images=len(paths), views=dict(views or {}),
                    images=data_fingerprint(paths, ()))
    # the method (which may refuse the backbone) and a resumed state (which may be refused)
    # before any image is decoded
    with torch_threads(n_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = make_method(method, create_backbone(backbone, in_chans=1), image_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    state_file = resume_path(out)
    first, losses = 0, []
    if resume and state_file.is_file():
        first, losses = _restore(state_file, settings, model, optimizer)
    images = load_images(paths, image_size=image_size, contrast=contrast, cache_dir=cache_dir,
                         verbose=progress)
    mean, std = float(np.mean(images, dtype=np.float64)), float(np.std(images, dtype=np.float64))
    with torch_threads(n_threads), torch.random.fork_rng(devices=[]):
        loader = torch.utils.data.DataLoader(
            _Views(images, view_transform),
            batch_size=settings["batch_size"], shuffle=True, drop_last=True,
            generator=torch.Generator())
        bar = tqdm(total=epochs * len(loader), initial=first * len(loader), unit="step",
                   desc=f"pretrain {method} {backbone}", disable=not progress)
        with bar:
            for epoch in range(first, epochs):
                torch.manual_seed(random_state * 100_003 + epoch)  # views and batches of the epoch
                loader.generator.manual_seed(random_state * 100_003 + epoch)
                losses.append(_epoch(model, optimizer, loader, mean, std, bar, epoch))
                _save_state(state_file, settings, model, optimizer, epoch + 1, losses)
    notes = dict(method=method, epochs=len(losses), images=len(paths), views=settings["views"],
                 final_loss=f"{losses[-1]:.4f}" if losses else "nan")
    save_backbone_weights(out, model.backbone, name=backbone, image_size=image_size,
                          input_mean=mean, input_std=std, contrast=contrast, **notes)
    state_file.unlink(missing_ok=True)
    return dict(backbone=backbone, image_size=int(image_size), contrast=contrast,
                input_mean=mean, input_std=std, **notes, losses=losses,
                seconds=time.perf_counter() - start)


def check_out(out, *, overwrite=False):
    """Refuse the weights file ``out`` before any work.

    Raises :class:`~bmdkit.errors.MissingFileError` if its folder does not
    exist, :class:`~bmdkit.errors.ParameterError` if it does not end in
    ``.safetensors``, :class:`~bmdkit.errors.FileClashError` if it exists
    and ``overwrite`` is false.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> check_out(Path(tempfile.mkdtemp()) / "w.safetensors")
    """
    out = Path(out)
    if not out.parent.is_dir():
        raise MissingFileError(f"the folder of the weights file {out} does not exist")
    if out.suffix != ".safetensors":
        raise ParameterError(f"out={str(out)!r} must end in .safetensors (the weights file)")
    if out.exists() and not overwrite:
        raise FileClashError(f"{out} exists; pass overwrite=True (bmdkit pretrain --overwrite) "
                             "to replace it")


def _epoch(model, optimizer, loader, mean, std, bar, epoch):
    """Train one epoch; its mean loss."""
    model.train()
    total, steps = 0.0, 0
    for views in loader:
        loss = model([(view - mean) / std for view in views])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, steps = total + loss.item(), steps + 1
        bar.update()
        bar.set_postfix(epoch=epoch + 1, loss=f"{total / steps:.4f}")
    return total / max(steps, 1)


def _save_state(path, settings, model, optimizer, epochs_done, losses):
    with atomic_path(path) as tmp:
        torch.save(dict(settings=settings, epochs_done=epochs_done, losses=list(losses),
                        model=model.state_dict(), optimizer=optimizer.state_dict()), tmp)


def _restore(path, settings, model, optimizer):
    """Load a killed run's state into ``model`` and ``optimizer``: (epochs done, losses)."""
    state = load_state(path, "resume file", "rerun without --resume to start afresh",
                       lambda state: (state["settings"].get, state["model"], state["optimizer"],
                                      state["epochs_done"], state["losses"]))
    differ = {key: (state["settings"].get(key), settings[key]) for key in _SAME_ON_RESUME
              if state["settings"].get(key) != settings[key]}
    if differ:
        raise SavedFileError(f"cannot resume from {path}: it was written with other settings "
                             + ", ".join(f"{key}={old!r} (now {new!r})"
                                         for key, (old, new) in differ.items())
                             + "; rerun without --resume to start afresh")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["epochs_done"], list(state["losses"])
