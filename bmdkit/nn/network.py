"""BMDNet: the torch module behind every bmdkit estimator."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from bmdkit.nn.augment import ModalityDropout, RadiographAugment
from bmdkit.nn.backbones import ImageEncoder
from bmdkit.nn.fusions import create_fusion, fusion_class
from bmdkit.params import Options, check_param

__all__ = ["BMDNet", "PRECISIONS"]

PRECISIONS = ("float32", "bfloat16")


class BMDNet(nn.Module):
    """Image encoder, a fusion with the metadata, and a regression head.

    Parameters
    ----------
    fusion : str
        A registered fusion (:func:`bmdkit.nn.fusions.fusion_names`):
        ``"xattn"`` (XAttn-BMD), ``"concat"``, ``"daft"``, ``"gated"``,
        ``"late"``, ``"image"`` or ``"metadata"``.
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
    image_tiles : (int, int), default=(1, 1)
        Encode each image as this grid of tiles (rows, cols), each tile on
        its own (see :class:`~bmdkit.nn.backbones.ImageEncoder`).
    n_outputs : int, default=1
        Targets predicted per row.
    modality_dropout : float in [0, 1), default=0.0
        While training, hide the image of this share of the rows
        (:class:`~bmdkit.nn.augment.ModalityDropout`); above 0 the fusion
        learns a "no image" token (:meth:`bmdkit.nn.Fusion.mask_image`), and
        rows marked ``image_missing`` are predicted from the metadata alone.

    The forward pass takes keyword tensors ``image`` ``(B, 1, H, W)`` (or
    ``image_features``, the backbone's output for those images, see
    :meth:`backbone_features`), ``numeric`` ``(B, n_numeric)``,
    ``categorical`` ``(B, n_categorical)`` and optionally ``image_missing``
    ``(B,)`` (bool: rows whose image is to be ignored, whatever ``image``
    holds there) and returns ``(B, n_outputs)``; :meth:`forward_attention`
    takes the same and returns the attention maps too (fusions with attention).
    """

    def __init__(self, fusion="xattn", n_numeric=0, cardinalities=(), *, backbone="resnet18",
                 pretrained=False, embed_dim=64, n_heads=4, n_layers=3, dropout=0.1,
                 augment=True, freeze_backbone=False, precision="float32", channels_last=False,
                 n_outputs=1, modality_dropout=0.0, image_tiles=(1, 1)):
        super().__init__()
        check_param("precision", precision, Options(PRECISIONS))
        uses_image = fusion_class(fusion).uses_image
        self.precision = precision
        self.channels_last = channels_last
        self.augment = RadiographAugment() if (augment and uses_image) else nn.Identity()
        if uses_image:
            self.image_encoder = ImageEncoder(backbone, pretrained=pretrained, embed_dim=embed_dim,
                                              freeze_backbone=freeze_backbone, tiles=image_tiles)
            if channels_last:
                self.image_encoder.backbone.to(memory_format=torch.channels_last)
        self.fusion = create_fusion(
            fusion, embed_dim=embed_dim, n_numeric=n_numeric, cardinalities=list(cardinalities),
            dropout=dropout, n_outputs=n_outputs, n_heads=n_heads, n_layers=n_layers,
            missing_image_token=modality_dropout > 0)
        self.head = self.fusion.make_head()
        if modality_dropout > 0 and uses_image:
            self.modality_dropout = ModalityDropout(modality_dropout)

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
            features = self.image_encoder.backbone_features(self._prepare(image))
        return features.float()

    def forward(self, image=None, numeric=None, categorical=None, image_features=None,
                image_missing=None):
        with self._autocast():
            tokens, positions = self._image_tokens(image, image_features, image_missing)
            return self.head(self.fusion(tokens, numeric, categorical, positions)).float()

    def forward_attention(self, image=None, numeric=None, categorical=None, image_features=None,
                          image_missing=None):
        """``(predictions, attention maps)`` of a fusion with attention
        (:meth:`bmdkit.nn.fusions.Fusion.forward_attention`); the same inputs as ``forward``."""
        with self._autocast():
            tokens, positions = self._image_tokens(image, image_features, image_missing)
            fused, attention = self.fusion.forward_attention(tokens, numeric, categorical,
                                                             positions)
            return self.head(fused).float(), attention

    def _image_tokens(self, image, image_features, image_missing):
        """``(image tokens, their position codes)``, or ``(None, None)`` without images."""
        if not self.fusion.uses_image:
            return None, None
        tokens, positions = (
            self.image_encoder(self._prepare(self.augment(image)), return_positions=True)
            if image_features is None
            else self.image_encoder(features=image_features, return_positions=True))
        if hasattr(self, "modality_dropout"):
            image_missing = self.modality_dropout(image_missing, len(tokens), tokens.device)
        if image_missing is not None:
            tokens = self.fusion.mask_image(tokens, image_missing)
        return tokens, positions
