"""Torch modules of bmdkit: backbones, metadata tokenizers, fusions and heads."""

from bmdkit.nn.augment import ModalityDropout, RadiographAugment
from bmdkit.nn.backbones import ImageEncoder, create_backbone
from bmdkit.nn.fusions import (
    BidirectionalCrossAttention,
    CrossAttentionBlock,
    Fusion,
    MetadataPositionPooling,
    create_fusion,
    fusion_class,
    fusion_names,
    register_fusion,
)
from bmdkit.nn.heads import RegressionHead
from bmdkit.nn.network import PRECISIONS, BMDNet
from bmdkit.nn.tokenizers import MetadataMLP, MetadataTokenizer

__all__ = [
    "BMDNet", "BidirectionalCrossAttention", "CrossAttentionBlock", "Fusion", "ImageEncoder",
    "MetadataMLP", "MetadataPositionPooling", "MetadataTokenizer", "ModalityDropout",
    "PRECISIONS", "RadiographAugment",
    "RegressionHead",
    "create_backbone", "create_fusion", "fusion_class", "fusion_names", "register_fusion",
]
