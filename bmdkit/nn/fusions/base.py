"""The fusion interface and its registry (one factory, as timm's ``create_model``)."""

from __future__ import annotations

import torch
from torch import nn

from bmdkit.errors import ParameterError
from bmdkit.nn.heads import RegressionHead

__all__ = ["Fusion", "create_fusion", "fusion_class", "fusion_names", "register_fusion"]

_REGISTRY: dict[str, type[Fusion]] = {}


class Fusion(nn.Module):
    """Base class of the fusions: image tokens + metadata → one vector.

    Subclasses set the class attributes below, build their layers in
    ``__init__`` from the shared keyword arguments of :func:`create_fusion`
    and set ``self.out_features``. The shared arguments: ``embed_dim`` (token
    width), ``n_numeric`` and ``cardinalities`` (the metadata fields),
    ``dropout``, ``n_outputs`` (targets predicted), the attention sizes
    ``n_heads`` and ``n_layers`` (read by the fusions that attend) and
    ``missing_image_token``: a fusion that reads images then learns a "no
    image" token, which :meth:`mask_image` puts in place of every image
    token of a row without its image (modality dropout, ``missing_image=
    "metadata"``). Every fusion pools or attends over image tokens, so
    this one replacement serves them all; a subclass may override
    :meth:`mask_image`.

    Attributes
    ----------
    uses_image, uses_metadata : bool
        Which modalities the fusion reads; the estimator drops the other.
    has_attention : bool
        ``forward(..., return_attention=True)`` also returns attention maps.
    uses_positions : bool
        ``forward`` takes ``image_positions=``, the position code of every
        image token ``(N, embed_dim)``
        (:meth:`bmdkit.nn.backbones.ImageEncoder.forward`).
    """

    name: str = ""
    uses_image = True
    uses_metadata = True
    has_attention = False
    uses_positions = False
    out_features: int

    def __init__(self, *, embed_dim, n_numeric=0, cardinalities=(), dropout=0.1, n_outputs=1,
                 n_heads=4, n_layers=3, missing_image_token=False):
        super().__init__()
        self.embed_dim, self.dropout, self.n_outputs = embed_dim, dropout, n_outputs
        if missing_image_token and self.uses_image:
            # zeros: drawn from no generator, so the other weights initialise as without it
            self.missing_image = nn.Parameter(torch.zeros(embed_dim))

    def mask_image(self, image_tokens, missing):
        """``image_tokens`` ``(B, N, D)`` with every token of the ``missing`` rows ``(B,)``
        replaced by the learned "no image" token."""
        if not hasattr(self, "missing_image"):
            raise ParameterError("this network has no learned 'no image' token: it was built "
                             "without missing_image_token (fit with modality_dropout > 0)")
        token = self.missing_image.to(image_tokens.dtype).expand_as(image_tokens)
        return torch.where(missing.to(torch.bool)[:, None, None], token, image_tokens)

    def make_head(self):
        """The head taking this fusion's output to the ``n_outputs`` predictions."""
        return RegressionHead(self.out_features, hidden_dim=self.embed_dim, dropout=self.dropout,
                              n_outputs=self.n_outputs)

    def forward(self, image_tokens, numeric, categorical):  # pragma: no cover - abstract
        raise NotImplementedError


def register_fusion(name):
    """Class decorator adding a :class:`Fusion` to the registry under ``name``."""
    def decorate(cls):
        if name in _REGISTRY:
            raise ValueError(f"a fusion named {name!r} is registered already")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return decorate


def fusion_names():
    """Names of the registered fusions, in registration order."""
    return tuple(_REGISTRY)


def fusion_class(name):
    """The :class:`Fusion` subclass registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ParameterError(f"fusion must be one of {fusion_names()}, got {name!r}") from None


def create_fusion(name, **kwargs):
    """Build the fusion ``name`` from the shared keyword arguments of :class:`Fusion`."""
    return fusion_class(name)(**kwargs)
