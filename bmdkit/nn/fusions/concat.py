"""Concatenation: pooled image features next to a metadata MLP embedding."""

from __future__ import annotations

import torch

from bmdkit.nn.fusions.base import Fusion
from bmdkit.nn.tokenizers import MetadataMLP

__all__ = ["ConcatFusion"]


class ConcatFusion(Fusion):
    """``[mean image token ; metadata MLP embedding]`` (``2 * embed_dim`` features)."""

    def __init__(self, *, embed_dim, n_numeric=0, cardinalities=(), dropout=0.1, **sizes):
        super().__init__(embed_dim=embed_dim, dropout=dropout, **sizes)
        self.metadata_mlp = MetadataMLP(n_numeric, cardinalities, embed_dim=embed_dim,
                                        dropout=dropout)
        self.out_features = 2 * embed_dim

    def forward(self, image_tokens, numeric, categorical, image_positions=None):
        return torch.cat([image_tokens.mean(1), self.metadata_mlp(numeric, categorical)], dim=1)
