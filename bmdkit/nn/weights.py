"""Backbone weights files that say what they are: ``bmdkit pretrain``'s output.

A safetensors file of a timm backbone's weights (one input channel, no
classifier) whose metadata record what an estimator needs to use them as
they were trained: the backbone's timm name, the input size, the contrast
normalisation and the input mean and standard deviation. Such a file is
``pretrained="weights.safetensors"`` in every estimator; a plain timm
weights file (no such metadata) still loads through timm as before.
"""

from __future__ import annotations

import os
import warnings

from bmdkit.errors import ParameterError, SavedFileError
from bmdkit.files import atomic_path

__all__ = ["FORMAT", "backbone_file_metadata", "check_backbone_file", "check_pretrained",
           "load_backbone_weights",
           "save_backbone_weights"]

#: The ``format`` entry of the metadata of the files this module writes.
FORMAT = "bmdkit-backbone/1"


def save_backbone_weights(path, backbone, *, name, image_size, input_mean, input_std,
                          contrast="percentile", **notes):
    """Write ``backbone``'s weights and what they expect to ``path`` (safetensors), atomically.

    Parameters
    ----------
    path : str or os.PathLike
    backbone : torch.nn.Module
        The timm backbone (as :func:`~bmdkit.nn.backbones.create_backbone` makes it).
    name : str
        Its timm name.
    image_size : int
        Side of the square images it was trained on.
    input_mean, input_std : float
        The normalisation of its input: it sees ``(image - input_mean) / input_std``
        of images in [0, 1].
    contrast : str, default="percentile"
        The contrast normalisation of those images (:func:`bmdkit.io.load_images`).
    **notes
        Further facts to record (method, epochs, images, ...), as strings.
    """
    from safetensors.torch import save_file

    metadata = {"format": FORMAT, "backbone": str(name), "image_size": str(int(image_size)),
                "input_mean": repr(float(input_mean)), "input_std": repr(float(input_std)),
                "contrast": str(contrast), **{key: str(value) for key, value in notes.items()}}
    tensors = {key: value.detach().cpu().contiguous()
               for key, value in backbone.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, os.fspath(tmp), metadata=metadata)
    return path


def backbone_file_metadata(path):
    """The recorded facts of a weights file of :func:`save_backbone_weights`, else ``None``.

    Numbers come back as numbers (``image_size`` an int, the mean and std floats).
    ``None`` for any other file (a plain timm ``.safetensors``, ``.pth`` or ``.bin``)
    and for a path that is no file.
    """
    path = os.fspath(path)
    if not (path.endswith(".safetensors") and os.path.isfile(path)):
        return None
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as file:
            metadata = dict(file.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise SavedFileError(f"pretrained weights file {path} is not a readable safetensors file "
                             f"({exc})") from exc
    if metadata.get("format") != FORMAT:
        return None
    metadata["image_size"] = int(metadata["image_size"])
    metadata["input_mean"] = float(metadata["input_mean"])
    metadata["input_std"] = float(metadata["input_std"])
    return metadata


def check_backbone_file(path, backbone):
    """The metadata of ``path`` (or ``None``), or a ValueError naming both backbones.

    Examples
    --------
    >>> import tempfile, os, timm
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> net = timm.create_model("resnet10t", in_chans=1, num_classes=0, global_pool="")
    >>> _ = save_backbone_weights(path, net, name="resnet10t", image_size=32,
    ...                           input_mean=0.4, input_std=0.2)
    >>> check_backbone_file(path, "resnet10t")["image_size"]
    32
    >>> check_backbone_file(path, "resnet18")
    Traceback (most recent call last):
    ...
    bmdkit.errors.ParameterError: pretrained weights ... are for backbone 'resnet10t', not for backbone='resnet18': ...
    """
    metadata = backbone_file_metadata(path)
    if metadata is not None and metadata["backbone"] != backbone:
        raise ParameterError(
            f"pretrained weights {os.fspath(path)} are for backbone {metadata['backbone']!r}, not "
            f"for backbone={backbone!r}: pass backbone={metadata['backbone']!r}, or weights "
            f"pretrained for {backbone!r} (bmdkit pretrain --backbone {backbone})")
    return metadata


def check_pretrained(pretrained, backbone, image_size, contrast):
    """Check an estimator's ``pretrained`` against the file's record, if it has one.

    A ``bmdkit pretrain`` file records its backbone (another ``backbone`` is a
    ParameterError naming both), input normalisation (used as recorded),
    image size and contrast (a different one warns). ``False``, ``True``,
    ``None`` and plain timm files pass unchecked.
    """
    if pretrained in (False, None, True):
        return
    recorded = check_backbone_file(pretrained, backbone)
    if recorded is None:
        return
    for name, value in (("image_size", image_size), ("contrast", contrast)):
        if recorded[name] != value:
            warnings.warn(f"pretrained weights {pretrained} were trained with {name}="
                          f"{recorded[name]!r}, this model has {name}={value!r}",
                          UserWarning, stacklevel=5)


def load_backbone_weights(backbone, path):
    """Load the weights of a :func:`save_backbone_weights` file into ``backbone`` (strict)."""
    from safetensors.torch import load_file

    state = load_file(os.fspath(path))
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SavedFileError(f"pretrained weights {os.fspath(path)} do not fit the backbone: "
                             f"missing {sorted(missing)[:5]}, unexpected "
                             f"{sorted(unexpected)[:5]}")
    return backbone

