"""Save and load fitted bmdkit models without pickle.

A saved model is a folder of two files:

- ``weights.safetensors``: the network's tensors (safetensors holds tensors
  only, so reading it runs no code);
- ``model.json``: everything else: the estimator's class and parameters,
  the fitted preprocessor's state (column names, imputer medians, scaler
  means and scales, categories), the target scaling, the loss weight table,
  the net's settings, the SHA-256 of the weights and the versions of
  bmdkit, torch, timm, skorch and scikit-learn that wrote it.

Loading never unpickles or imports anything named in the files: the
estimator's class is looked up in :data:`ESTIMATORS`, the registry that
estimator classes fill themselves when they are defined (every subclass of
:class:`bmdkit.BMDRegressor` registers, :func:`register_estimator`); the net's
classes in the fixed allow-list :data:`ALLOWED_CLASSES`. A model of a class
not registered in the loading process (its module not imported) is an error
naming the class. The network is rebuilt by the estimator's own net factory,
the one its ``fit`` uses. This module never imports :mod:`bmdkit.estimators`
(which imports it) at load: :func:`bmdkit.load` is :func:`load` reached
through :mod:`bmdkit.estimators`, so the built-in estimators are registered;
:func:`load` called here first imports :data:`BUILTIN_ESTIMATORS` (a fixed
name, never one a file gives) when a class is not registered, so that
``bmdkit.persistence.load`` loads the built-in models as it always did.

The folder is written to a temporary sibling and renamed into place, so a
failure leaves no half-written model (:func:`write_folder`, which the conformal
wrapper's folders use too). This module only writes and reads files: what goes
in them is each object's own ``to_state()``, and ``from_state()`` rebuilds it
(:mod:`bmdkit.estimator_state`). ``model.json`` records :data:`FORMAT_VERSION`;
a model of an older version is brought up to date by the steps of
:data:`MIGRATIONS` (one per version), one of a newer or unknown version is
refused with a message naming it and what to do.

Parameters that JSON cannot hold (skorch ``callbacks``, a ``RandomState``
instance) only matter for training: they are dropped with a warning, listed
under ``dropped_params`` in ``model.json``, and the loaded model has their
default (``None``). The loaded model predicts exactly like the saved one.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from bmdkit.clinical import SBMD_EQUATIONS, screening_thresholds
from bmdkit.errors import FileClashError, MissingFileError, ParameterError, SavedFileError
from bmdkit.files import write_bytes, write_text
from bmdkit.losses import WeightedSmoothL1Loss
from bmdkit.nn import BMDNet

__all__ = ["ESTIMATORS", "load", "register_estimator", "save"]

FORMAT = "bmdkit-model"
FORMAT_VERSION = 2
META_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
VERSIONED = ("bmdkit", "torch", "timm", "skorch", "scikit-learn", "numpy", "safetensors")

#: The only classes a saved model may name (net module, criterion, optimizer).
ALLOWED_CLASSES = {
    cls.__module__ + "." + cls.__qualname__: cls
    for cls in (BMDNet, WeightedSmoothL1Loss, torch.nn.MSELoss, torch.nn.SmoothL1Loss,
                torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD)
}
#: Densitometer scale assumed for a model saved without one.
DEFAULT_DENSITOMETER = "lunar"


#: Estimator classes that can be saved and loaded, by :func:`class_name`.
ESTIMATORS = {}
#: The module whose import registers the built-in estimators (:func:`_estimator_class`).
BUILTIN_ESTIMATORS = "bmdkit.estimators"


def class_name(cls):
    """``"module.QualifiedName"`` of a class: how ``model.json`` names it."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_estimator(cls):
    """Let :func:`save` and :func:`load` handle estimators of class ``cls``; returns ``cls``.

    :class:`bmdkit.BMDRegressor` registers itself and every subclass when it
    is defined (``__init_subclass__``), so a subclass needs no call. A class
    defined again under the same name replaces the earlier one.
    """
    ESTIMATORS[class_name(cls)] = cls
    return cls


def _estimator_class(name, meta_path):
    """The registered class ``name``; an error naming it when it is not registered."""
    if "." not in name:  # written before names were qualified: a built-in estimator
        name = f"bmdkit.estimators.{name}"
    if name not in ESTIMATORS:  # persistence.load called before any estimator was imported
        importlib.import_module(BUILTIN_ESTIMATORS)
    if name not in ESTIMATORS:
        module = name.rsplit(".", 1)[0].split(".<locals>")[0]
        raise SavedFileError(
            f"{meta_path} is a model of class {name!r}, which is not registered in this process "
            f"(loading never imports what a file names): import {module} before loading, or "
            "use bmdkit.load for the built-in estimators")
    return ESTIMATORS[name]


def _versions():
    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    found["torch"] = torch.__version__  # with its build tag, e.g. "+cu132"
    return found


class _Unserialisable(TypeError):
    pass


def _to_json(value):
    """A JSON value for a parameter, or _Unserialisable."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, tuple):  # kept a tuple, so that get_params() is as it was
        return {"__tuple__": [_to_json(v) for v in value]}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, type):
        name = value.__module__ + "." + value.__qualname__
        if name in ALLOWED_CLASSES:
            return {"__class__": name}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise _Unserialisable(f"{type(value).__name__} cannot be written as JSON")


def _from_json(value):
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(_from_json(v) for v in value["__tuple__"])
    if isinstance(value, dict) and "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
    if isinstance(value, dict) and "__class__" in value:
        if value["__class__"] not in ALLOWED_CLASSES:
            raise SavedFileError(f"model.json names class {value['__class__']!r}, which bmdkit "
                             "does not load (not in persistence.ALLOWED_CLASSES)")
        return ALLOWED_CLASSES[value["__class__"]]
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _json_net(settings):
    """The net's settings as JSON; one that JSON cannot hold is an error naming it."""
    state = {}
    for key, value in settings.items():
        try:
            state[key] = _to_json(value)
        except _Unserialisable as err:
            raise ParameterError(f"cannot save net parameter {key!r}: {err}") from None
    return state


def _json_params(params):
    """``(params as JSON, names dropped)``: those JSON cannot hold only matter for training."""
    encoded, dropped = {}, []
    for key, value in params.items():
        try:
            encoded[key] = _to_json(value)
        except _Unserialisable:
            if value is not None:
                dropped.append(key)
    if dropped:
        warnings.warn(
            f"not saved (JSON cannot hold them; they only affect training): {dropped}; the "
            "loaded model has None there", UserWarning, stacklevel=3)
    return encoded, dropped


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def save(model, path, *, overwrite=False, densitometer=None):
    """Save a fitted bmdkit estimator to the folder ``path``.

    Parameters
    ----------
    model : BMDRegressor
        Fitted.
    path : str or Path
        Folder to create (its parent must exist).
    overwrite : bool, default=False
        Replace an existing saved model at ``path``; any other existing
        folder is never replaced. The folder holds a complete model (the old
        or the new one) at every moment.
    densitometer : str or None, default=None
        DXA device scale of the BMD the model was trained on (a key of
        :data:`bmdkit.clinical.SBMD_EQUATIONS`, e.g. ``"hologic"``), saved
        with the screening thresholds it implies; ``bmdkit predict`` computes
        T-scores on it. ``None``: the model's ``densitometer_`` when it was
        loaded with one, else ``"lunar"``.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, numpy as np, pandas as pd
    >>> import bmdkit
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"age": rng.uniform(50, 90, 60), "sex": rng.choice(["F", "M"], 60)})
    >>> y = 1.2 - 0.006 * X["age"] + rng.normal(0, 0.05, 60)
    >>> model = bmdkit.MetadataOnlyBMDRegressor(max_epochs=2, random_state=0).fit(X, y)
    >>> folder = model.save(tempfile.mkdtemp() + "/model")
    >>> bool((bmdkit.load(folder).predict(X) == model.predict(X)).all())
    True
    """
    if not hasattr(model, "net_"):
        raise ParameterError(f"{type(model).__name__} is not fitted: fit it before saving")
    if ESTIMATORS.get(class_name(type(model))) is not type(model):
        raise ParameterError(f"only registered bmdkit estimators (BMDRegressor and its subclasses) "
                        f"can be saved, not {class_name(type(model))}")
    path = Path(path)
    check_destination(path, overwrite=overwrite, saved=(path / META_FILE).is_file())
    densitometer = densitometer or getattr(model, "densitometer_", DEFAULT_DENSITOMETER)
    if densitometer not in SBMD_EQUATIONS["femoral_neck"]:
        raise ParameterError(f"densitometer must be one of {sorted(SBMD_EQUATIONS['femoral_neck'])}, "
                             f"got {densitometer!r}")
    state, tensors = model.to_state()
    params, dropped = _json_params(state["params"])
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "versions": _versions(),
        "class": class_name(type(model)), "params": params, "dropped_params": dropped,
        "fitted": _to_json(state["fitted"]), "net": _json_net(state["net"]),
        "clinical": {"site": model.sites_ or "femoral_neck", "densitometer": densitometer,
                     "thresholds": screening_thresholds(device=densitometer)},
    }
    data = save_tensors(tensors, metadata={"format": FORMAT})
    if path.exists():
        _replace_in_place(path, meta, data)
        return path

    def write(folder):
        (folder / WEIGHTS_FILE).write_bytes(data)
        meta["weights"] = {"file": WEIGHTS_FILE, "sha256": _sha256(data)}
        (folder / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return write_folder(path, write)


def check_destination(path, *, overwrite, saved):
    """A FileClashError unless ``path`` is free, or a saved model (``saved``) to overwrite."""
    if path.exists() and not (overwrite and saved):
        raise FileClashError(
            f"{path} exists; pass overwrite=True to replace a saved model" if saved
            else f"{path} exists and is not a saved bmdkit model")


def write_folder(path, write):
    """Create the folder ``path`` whole or not at all: ``write(folder)`` fills a temporary
    sibling, which is then renamed into place (an existing ``path`` is replaced only after
    the new one is complete). Returns ``path``."""
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        write(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            path.rename(old / "model")
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _replace_in_place(path, meta, data):
    """Overwrite the saved model in ``path`` so that it holds a complete model at every moment.

    The new weights go to a file name the old model.json does not use, then
    model.json is replaced in one ``os.replace`` (the switch), then the old
    weights are deleted.
    """
    try:
        old = json.loads((path / META_FILE).read_text(encoding="utf-8"))["weights"]["file"]
    except (OSError, ValueError, KeyError, TypeError):  # a damaged model: nothing to keep
        old = None
    name = WEIGHTS_FILE if old != WEIGHTS_FILE else f"weights-{_sha256(data)[:16]}.safetensors"
    write_bytes(path / name, data)
    meta["weights"] = {"file": name, "sha256": _sha256(data)}
    try:
        write_text(path / META_FILE, json.dumps(meta, indent=1))
    except BaseException:
        (path / name).unlink(missing_ok=True)
        raise
    if old is not None and old != name and os.path.basename(old) == old:
        (path / old).unlink(missing_ok=True)


def _available_device(device, saved, path):
    """``device``, or ``"cpu"`` (with a warning) for a CUDA model on a machine without CUDA."""
    if device is None and isinstance(saved, str) and saved.startswith("cuda") \
            and not torch.cuda.is_available():
        warnings.warn(f"{path} was saved on {saved!r}; this machine has no CUDA device, so it "
                      "is loaded onto the CPU (pass device= to choose)", UserWarning, stacklevel=3)
        return "cpu"
    return device


def read_description(meta_path, *, fmt, what):
    """The JSON object at ``meta_path``; an error naming the file if missing, damaged or not ``fmt``.

    ``what`` names the saved thing in the messages (``"bmdkit model"``).
    """
    if not meta_path.is_file():
        raise MissingFileError(
            f"{meta_path} not found: {meta_path.parent} is not a saved {what}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SavedFileError(f"{meta_path} is not valid JSON ({err}); the file is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise SavedFileError(f"{meta_path} is not a {what} description")
    return meta


def _logit_scale_of_v1(meta, tensors):
    """Format 1 → 2: XAttn pooling weights saved before its logit scale was a buffer were
    trained with logits / sqrt(d); format 2 always holds the buffer, so it gets that value."""
    for key in [k for k in tensors if k.endswith("image_pooling.key.weight")]:
        scale = key.removesuffix("key.weight") + "logit_scale"
        tensors.setdefault(scale, torch.tensor(tensors[key].shape[0] ** -0.5))
    return meta, tensors


#: ``{format version v: step}``: each step takes a saved model of format v, as
#: ``(model.json's dict, tensors)``, to format v + 1; :func:`migrate` chains them up
#: to :data:`FORMAT_VERSION`. A change of what is saved bumps the version and adds a step.
MIGRATIONS = {1: _logit_scale_of_v1}


def _format_version(meta, path):
    """The format version of a saved model, or a SavedFileError naming it and what to do."""
    version = meta.get("format_version")
    first = min(MIGRATIONS, default=FORMAT_VERSION)
    if not isinstance(version, int) or not first <= version <= FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise SavedFileError(
            f"{path} was written in bmdkit model format {version!r} (by bmdkit "
            f"{meta.get('versions', {}).get('bmdkit')}); this bmdkit "
            f"({_versions()['bmdkit']}) reads formats {first} to {FORMAT_VERSION}: "
            + ("upgrade bmdkit to load it" if newer else "refit the model with this bmdkit"))
    return version


def migrate(meta, tensors, version):
    """``(meta, tensors)`` of a saved model of format ``version`` (as :func:`_format_version`
    checked it) brought to :data:`FORMAT_VERSION`."""
    for step in range(version, FORMAT_VERSION):
        meta, tensors = MIGRATIONS[step](meta, tensors)
    return dict(meta, format_version=FORMAT_VERSION), tensors


def load(path, *, device=None):
    """Load a model written by :func:`save` (or ``model.save``).

    Parameters
    ----------
    path : str or Path
    device : str or None, default=None
        Torch device to load onto (default: the saved ``device``).

    Returns
    -------
    BMDRegressor
        Fitted; ``predict`` gives exactly the saved model's predictions on
        the same device.

    Raises
    ------
    FileNotFoundError
        A file is missing.
    ValueError
        A file is damaged or altered, or was written in another format.
    """
    path = Path(path)
    meta = read_description(path / META_FILE, fmt=FORMAT, what="bmdkit model")
    format_version = _format_version(meta, path)
    saved_versions, here = meta.get("versions", {}), _versions()
    differ = {k: (v, here.get(k)) for k, v in saved_versions.items() if here.get(k) != v}
    if differ:
        warnings.warn(f"{path} was saved with other library versions (saved, here): {differ}",
                      UserWarning, stacklevel=2)
    weights_path = path / meta["weights"]["file"]
    if not weights_path.is_file():
        raise MissingFileError(f"{weights_path} not found: the saved model is incomplete")
    data = weights_path.read_bytes()  # read once: hashed here, deserialised below
    if _sha256(data) != meta["weights"]["sha256"]:
        raise SavedFileError(f"{weights_path} does not match the checksum in model.json: "
                             "the weights were altered or damaged")
    cls = _estimator_class(meta["class"], path / META_FILE)
    unknown = sorted(set(meta["params"]) - set(cls().get_params()))
    if unknown:
        raise SavedFileError(
            f"{path / META_FILE} has parameters {cls.__name__} does not take: "
            f"{', '.join(map(repr, unknown))}; the model was probably written by a newer bmdkit "
            f"({saved_versions.get('bmdkit')}; this is {here['bmdkit']})")
    try:
        meta, tensors = migrate(meta, load_tensors(data), format_version)  # tensors onto the CPU
        state = {key: _from_json(meta[key]) for key in ("params", "fitted", "net")}
        device = _available_device(device, state["params"].get("device"), path)
        model = cls.from_state(state, tensors, device=device)
    except SavedFileError as err:  # raised where the file's name is not known
        raise SavedFileError(f"{path}: {err}") from err
    except (SafetensorError, RuntimeError, TypeError) as err:
        hint = ("; its layers are not the ones this bmdkit builds for these settings (a "
                "fusion's design changed, e.g. XAttn's metadata-position pooling after "
                "bmdkit commit ddb5d4a): refit the model with this bmdkit"
                if "Missing key(s)" in str(err) or "Unexpected key(s)" in str(err) else "")
        raise SavedFileError(
            f"could not rebuild the network of {path} (saved with {saved_versions}, this "
            f"installation has {here}): {err}{hint}") from err
    model.densitometer_ = meta.get("clinical", {}).get("densitometer", DEFAULT_DENSITOMETER)
    return model
