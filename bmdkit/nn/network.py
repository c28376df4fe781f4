"""BMDNet: the torch module behind every bmdkit estimator."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from bmdkit.nn.augment import RadiographAugment
from bmdkit.nn.backbones import ImageEncoder
from bmdkit.nn.fusion import BidirectionalCrossAttention
from bmdkit.nn.heads import RegressionHead
from bmdkit.nn.tokenizers import MetadataMLP, MetadataTokenizer

__all__ = ["BMDNet", "FUSIONS", "PRECISIONS"]

FUSIONS = ("xattn", "concat", "image", "metadata")
PRECISIONS = ("float32", "bfloat16")


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
    freeze_backbone : bool, default=False
        Fix the backbone's weights (see :class:`~bmdkit.nn.backbones.ImageEncoder`).
    precision : {"float32", "bfloat16"}, default="float32"
        ``"bfloat16"`` runs the forward pass under ``torch.autocast`` (CPU or
        CUDA); the output is float32 either way.
    channels_last : bool, default=False
        Keep the backbone's weights and the images in channels-last memory
        format (faster convolutions on some GPUs and CPUs).

    The forward pass takes keyword tensors ``image`` ``(B, 1, H, W)`` (or
    ``image_features``, the backbone's output for those images, see
    :meth:`backbone_features`), ``numeric`` ``(B, n_numeric)`` and
    ``categorical`` ``(B, n_categorical)`` and returns ``(B, 1)``; with
    ``return_attention=True`` (xattn only) also the attention dict.
    """

    def __init__(self, fusion="xattn", n_numeric=0, cardinalities=(), *, backbone="resnet18",
                 pretrained=False, embed_dim=64, n_heads=4, n_layers=3, dropout=0.1,
                 augment=True, freeze_backbone=False, precision="float32", channels_last=False):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.fusion = fusion
        self.precision = precision
        self.channels_last = channels_last
        uses_image = fusion != "metadata"
        self.augment = RadiographAugment() if (augment and uses_image) else nn.Identity()
        if uses_image:
            self.image_encoder = ImageEncoder(backbone, pretrained=pretrained, embed_dim=embed_dim,
                                              freeze_backbone=freeze_backbone)
            if channels_last:
                self.image_encoder.backbone.to(memory_format=torch.channels_last)
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

    def _autocast(self):
        if self.precision == "float32":
            return contextlib.nullcontext()
        device_type = next(self.parameters()).device.type
        return torch.autocast(device_type, dtype=getattr(torch, self.precision))

    def _prepare(self, image):
        return image.contiguous(memory_format=torch.channels_last) if self.channels_last else image

    @torch.no_grad()
    def backbone_features(self, image):
        """The backbone's output for ``image`` (no augmentation, no gradient), as float32."""
        with self._autocast():
            features = self.image_encoder.backbone.forward_features(self._prepare(image))
        return features.float()

    def forward(self, image=None, numeric=None, categorical=None, return_attention=False,
                image_features=None):
        if return_attention and self.fusion != "xattn":
            raise ValueError(f"attention weights exist only for fusion='xattn', not {self.fusion!r}")
        with self._autocast():
            out = self._forward(image, numeric, categorical, return_attention, image_features)
        if return_attention:
            return out[0].float(), out[1]
        return out.float()

    def _forward(self, image, numeric, categorical, return_attention, image_features):
        if self.fusion == "metadata":
            return self.head(self.metadata_encoder(numeric, categorical))
        if image_features is None:
            image_tokens = self.image_encoder(self._prepare(self.augment(image)))
        else:
            image_tokens = self.image_encoder(features=image_features)
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
