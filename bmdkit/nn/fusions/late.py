r"""Late fusion: a learned combination of two single-modality predictions.

Each modality has its own regression head; the prediction is
:math:`\hat y = a_1 \hat y_{image} + a_2 \hat y_{metadata} + b`, with
:math:`a` and :math:`b` learned (initialised to the plain average).
"""

from __future__ import annotations

import torch
from torch import nn

from bmdkit.nn.fusions.base import Fusion
from bmdkit.nn.heads import RegressionHead
from bmdkit.nn.tokenizers import MetadataMLP

__all__ = ["LateFusion"]


class LateFusion(Fusion):
    """An image head and a metadata head; out: their ``2 * n_outputs`` predictions."""

    def __init__(self, *, embed_dim, n_numeric=0, cardinalities=(), dropout=0.1, **sizes):
        super().__init__(embed_dim=embed_dim, dropout=dropout, **sizes)
        self.metadata_mlp = MetadataMLP(n_numeric, cardinalities, embed_dim=embed_dim,
                                        dropout=dropout)
        self.image_head, self.metadata_head = (
            RegressionHead(embed_dim, hidden_dim=embed_dim, dropout=dropout,
                           n_outputs=self.n_outputs) for _ in range(2))
        self.out_features = 2 * self.n_outputs

    def make_head(self):
        return _Combination(self.n_outputs)

    def forward(self, image_tokens, numeric, categorical, image_positions=None):
        return torch.cat([self.image_head(image_tokens.mean(1)),
                          self.metadata_head(self.metadata_mlp(numeric, categorical))], dim=1)


class _Combination(nn.Module):
    """``a_1 * image prediction + a_2 * metadata prediction + b``, per output."""

    def __init__(self, n_outputs):
        super().__init__()
        self.n_outputs = n_outputs
        self.weights = nn.Parameter(torch.full((2, n_outputs), 0.5))
        self.bias = nn.Parameter(torch.zeros(n_outputs))

    def forward(self, predictions):
        pairs = predictions.view(-1, 2, self.n_outputs)
        return (pairs * self.weights).sum(1) + self.bias
