"""BMDNet: the torch module behind every bmdkit estimator."""

from __future__ import annotations

import torch
from torch import nn

from bmdkit.nn.augment import RadiographAugment
from bmdkit.nn.backbones import ImageEncoder
from bmdkit.nn.fusion import BidirectionalCrossAttention
from bmdkit.nn.heads import RegressionHead
from bmdkit.nn.tokenizers import MetadataMLP, MetadataTokenizer

__all__ = ["BMDNet", "FUSIONS"]

FUSIONS = ("xattn", "concat", "image", "metadata")


class BMDNet(nn.Module):
    """Image encoder, metadata encoder and a fusion, ending in one BMD value.

    Parameters
    ----------
    fusion : {"xattn", "concat", "image", "metadata"}
        ``"xattn"``: image tokens and metadata tokens fused by
        :class:`~bmdkit.nn.fusion.BidirectionalCrossAttention`.
        ``"concat"``: pooled image features concatenated with a metadata MLP
        embedding. ``"image"`` / ``"metadata"``: one modality alone.
    n_numeric : int
        Number of numeric metadata fields.
    cardinalities : sequence of int
        Known categories per categorical metadata field.
    backbone, pretrained : see :func:`~bmdkit.nn.backbones.create_backbone`.
    embed_dim, n_heads, n_layers, dropout : fusion sizes.
    augment : bool
        Apply :class:`~bmdkit.nn.augment.RadiographAugment` in training mode.

    The forward pass takes keyword tensors ``image`` ``(B, 1, H, W)``,
    ``numeric`` ``(B, n_numeric)`` and ``categorical`` ``(B, n_categorical)``
    and returns ``(B, 1)``; with ``return_attention=True`` (xattn only) also
    the attention dict.
    """

    def __init__(self, fusion="xattn", n_numeric=0, cardinalities=(), *, backbone="resnet18",
                 pretrained=False, embed_dim=64, n_heads=4, n_layers=3, dropout=0.1,
                 augment=True):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        uses_image = fusion != "metadata"
        self.augment = RadiographAugment() if (augment and uses_image) else nn.Identity()
        if uses_image:
            self.image_encoder = ImageEncoder(backbone, pretrained=pretrained, embed_dim=embed_dim)
        if fusion == "xattn":
            self.metadata_encoder = MetadataTokenizer(
                n_numeric, cardinalities, embed_dim=embed_dim, n_heads=n_heads, dropout=dropout
            )
            self.fuse = BidirectionalCrossAttention(
                embed_dim, n_heads=n_heads, n_layers=n_layers, dropout=dropout
            )
            head_in = self.fuse.out_features
        elif fusion in ("concat", "metadata"):
            self.metadata_encoder = MetadataMLP(
                n_numeric, cardinalities, embed_dim=embed_dim, dropout=dropout
            )
            head_in = embed_dim * (2 if fusion == "concat" else 1)
        else:
            head_in = embed_dim
        self.head = RegressionHead(head_in, hidden_dim=embed_dim, dropout=dropout)

    def forward(self, image=None, numeric=None, categorical=None, return_attention=False):
        if return_attention and self.fusion != "xattn":
            raise ValueError(f"attention weights exist only for fusion='xattn', not {self.fusion!r}")
        if self.fusion == "metadata":
            return self.head(self.metadata_encoder(numeric, categorical))
        image_tokens = self.image_encoder(self.augment(image))
        if self.fusion == "image":
            return self.head(image_tokens.mean(1))
        if self.fusion == "concat":
            meta = self.metadata_encoder(numeric, categorical)
            return self.head(torch.cat([image_tokens.mean(1), meta], dim=1))
        meta_tokens = self.metadata_encoder(numeric, categorical)
        fused = self.fuse(image_tokens, meta_tokens, return_attention=return_attention)
        if return_attention:
            fused, attention = fused
            return self.head(fused), attention
        return self.head(fused)
