r"""Gated fusion: a learned per-sample gate between the two modalities.

A gated multimodal unit (Arevalo et al., "Gated Multimodal Units for
Information Fusion", ICLR workshop 2017), with pooled image features
:math:`v`, metadata embedding :math:`m` and :math:`\sigma` the logistic function:

.. math::

    g = \sigma(W_g [v; m]), \qquad
    z = g \odot \tanh(W_v v) + (1 - g) \odot \tanh(W_m m)
"""

from __future__ import annotations

import torch
from torch import nn

from bmdkit.nn.fusions.base import Fusion
from bmdkit.nn.tokenizers import MetadataMLP

__all__ = ["GatedFusion"]


class GatedFusion(Fusion):
    """Per-sample, per-feature gate between image and metadata (``embed_dim`` features)."""

    def __init__(self, *, embed_dim, n_numeric=0, cardinalities=(), dropout=0.1, **sizes):
        super().__init__(embed_dim=embed_dim, dropout=dropout, **sizes)
        self.metadata_mlp = MetadataMLP(n_numeric, cardinalities, embed_dim=embed_dim,
                                        dropout=dropout)
        self.image_proj = nn.Linear(embed_dim, embed_dim)
        self.metadata_proj = nn.Linear(embed_dim, embed_dim)
        self.gate = nn.Linear(2 * embed_dim, embed_dim)
        self.out_features = embed_dim

    def forward(self, image_tokens, numeric, categorical, image_positions=None):
        image = image_tokens.mean(1)
        metadata = self.metadata_mlp(numeric, categorical)
        gate = torch.sigmoid(self.gate(torch.cat([image, metadata], dim=1)))
        fused = gate * torch.tanh(self.image_proj(image)) + (1 - gate) * torch.tanh(
            self.metadata_proj(metadata))
        return fused
