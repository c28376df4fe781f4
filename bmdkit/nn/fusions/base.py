"""The fusion interface and its registry (one factory, as timm's ``create_model``)."""

from __future__ import annotations

import torch
from torch import nn

from bmdkit.errors import ParameterError
from bmdkit.nn.heads import RegressionHead
from bmdkit.registry import FUSIONS, Entry

__all__ = ["Fusion", "create_fusion", "fusion_class", "fusion_names", "register_fusion"]

class Fusion(nn.Module):
    """Base class of the fusions: image tokens + metadata → one vector.

    Subclasses set the class attributes below, build their layers in
    ``__init__`` from the shared keyword arguments of :func:`create_fusion`
    and set ``self.out_features``. Every fusion's ``forward`` takes the same
    arguments, ``(image_tokens, numeric, categorical, image_positions=None)``:
    ``image_positions`` is the position code of every image token ``(N,
    embed_dim)`` (:meth:`bmdkit.nn.backbones.ImageEncoder.forward`), which a
    fusion may read (XAttn's pooling does) or ignore. A fusion with attention
    maps overrides :meth:`forward_attention` (as timm's
    ``forward_intermediates``): ``forward`` always returns the fused vector only. The shared arguments: ``embed_dim`` (token
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
        Whether :meth:`forward_attention` gives attention maps (set for each
        subclass from whether it overrides the method).
    """

    name: str = ""
    uses_image = True
    uses_metadata = True
    has_attention = False
    out_features: int

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.has_attention = cls.forward_attention is not Fusion.forward_attention

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

    def forward(self, image_tokens, numeric, categorical, image_positions=None):  # pragma: no cover
        raise NotImplementedError

    def forward_attention(self, image_tokens, numeric, categorical, image_positions=None):
        """``(fused vector, dict of attention maps)``, for a fusion with attention maps."""
        with_attention = [name for name in fusion_names() if fusion_class(name).has_attention]
        raise ParameterError(f"attention weights exist only for fusions with attention "
                             f"({', '.join(with_attention)}), not {self.name!r}")


def register_fusion(name, *, label=None, summary=""):
    """Class decorator adding a :class:`Fusion` of one's own to the registry under ``name``.

    The built-in fusions are listed once, in :data:`bmdkit.registry.FUSIONS`;
    ``label`` is the name shown in tables and reports (default: ``name``).
    """
    def decorate(cls):
        FUSIONS.add(Entry(name, label or name, cls, summary))
        cls.name = name
        return cls
    return decorate


def fusion_names():
    """Names of the registered fusions, in registration order."""
    return FUSIONS.names()


def fusion_class(name):
    """The :class:`Fusion` subclass registered as ``name`` (a ParameterError naming the others)."""
    cls = FUSIONS.load(name)
    cls.name = name
    return cls


def create_fusion(name, **kwargs):
    """Build the fusion ``name`` from the shared keyword arguments of :class:`Fusion`."""
    return fusion_class(name)(**kwargs)
