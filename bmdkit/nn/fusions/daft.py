r"""DAFT: the metadata conditions the image feature map by a dynamic affine transform.

After Pölsterl et al., "Combining 3D Image and Tabular Data via the Dynamic
Affine Feature Map Transform" (MICCAI 2021): a bottleneck MLP of the pooled
feature map :math:`\bar I` and the metadata embedding :math:`m` gives a
per-channel scale :math:`\alpha` and shift :math:`\beta` that modulate every
cell of the last feature map (as tokens :math:`I`), inside a residual block:

.. math::

    [\alpha; \beta] &= W_2\, \mathrm{ReLU}(W_1 [\bar I; m]) \\
    I' &= I + \mathrm{FFN}\big((1 + \alpha) \odot \mathrm{LN}(I) + \beta\big), \qquad
    z = [\,\overline{I'} \,;\, m\,]

:math:`W_2` starts at zero, so the transform starts as the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from bmdkit.nn.fusions.base import Fusion
from bmdkit.nn.tokenizers import MetadataMLP

__all__ = ["DAFTFusion"]


class DAFTFusion(Fusion):
    """Metadata-driven scale and shift of the image feature map (``2 * embed_dim`` features)."""

    def __init__(self, *, embed_dim, n_numeric=0, cardinalities=(), dropout=0.1, **sizes):
        super().__init__(embed_dim=embed_dim, dropout=dropout, **sizes)
        self.metadata_mlp = MetadataMLP(n_numeric, cardinalities, embed_dim=embed_dim,
                                        dropout=dropout)
        bottleneck = max(embed_dim // 4, 4)
        self.affine = nn.Sequential(nn.Linear(2 * embed_dim, bottleneck), nn.ReLU(),
                                    nn.Linear(bottleneck, 2 * embed_dim))
        nn.init.zeros_(self.affine[-1].weight)
        nn.init.zeros_(self.affine[-1].bias)
        self.norm = nn.LayerNorm(embed_dim)
        self.block = nn.Sequential(
            nn.Linear(embed_dim, 2 * embed_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(2 * embed_dim, embed_dim),
        )
        self.out_features = 2 * embed_dim

    def forward(self, image_tokens, numeric, categorical, image_positions=None):
        metadata = self.metadata_mlp(numeric, categorical)
        scale, shift = self.affine(torch.cat([image_tokens.mean(1), metadata], 1)).chunk(2, dim=1)
        modulated = self.norm(image_tokens) * (1 + scale[:, None]) + shift[:, None]
        image_tokens = image_tokens + self.block(modulated)
        return torch.cat([image_tokens.mean(1), metadata], dim=1)
