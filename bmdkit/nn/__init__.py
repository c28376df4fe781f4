"""Torch modules of bmdkit: backbones, metadata tokenizers, fusions and heads."""

from bmdkit.nn.augment import RadiographAugment
from bmdkit.nn.backbones import ImageEncoder, create_backbone
from bmdkit.nn.fusion import BidirectionalCrossAttention, CrossAttentionBlock
from bmdkit.nn.heads import RegressionHead
from bmdkit.nn.network import FUSIONS, PRECISIONS, BMDNet
from bmdkit.nn.tokenizers import MetadataMLP, MetadataTokenizer

__all__ = [
    "BMDNet", "FUSIONS", "PRECISIONS", "BidirectionalCrossAttention", "CrossAttentionBlock", "ImageEncoder",
    "MetadataMLP", "MetadataTokenizer", "RadiographAugment", "RegressionHead", "create_backbone",
]
