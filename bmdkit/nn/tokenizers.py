"""Metadata encoders: one token per field, or one flat embedding."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MetadataTokenizer", "MetadataMLP"]


class MetadataTokenizer(nn.Module):
    """One ``embed_dim`` token per metadata field, then field-level self-attention.

    A numeric field ``x_j`` becomes ``x_j * W_j + b_j`` (its own learned
    direction and offset, as in FT-Transformer); a categorical field becomes
    its own embedding table's row (row 0, for unknown or missing categories,
    is fixed at zero). Every weight starts uniform in
    ±1/√d (d = ``embed_dim``), FT-Transformer's initialisation, so numeric and
    categorical tokens start with comparable norms. One transformer layer
    then lets the fields attend to each other (the field-level attention of
    XAttn-BMD).

    Parameters
    ----------
    n_numeric : int
        Number of numeric fields.
    cardinalities : sequence of int
        Number of known categories of each categorical field.
    embed_dim, n_heads : int
    dropout : float
    """

    def __init__(self, n_numeric, cardinalities, *, embed_dim=64, n_heads=4, dropout=0.1):
        super().__init__()
        bound = embed_dim ** -0.5
        self.numeric_weight = nn.Parameter(torch.empty(n_numeric, embed_dim).uniform_(-bound, bound))
        self.numeric_bias = nn.Parameter(torch.empty(n_numeric, embed_dim).uniform_(-bound, bound))
        self.categorical = nn.ModuleList(
            nn.Embedding(c + 1, embed_dim, padding_idx=0) for c in cardinalities)
        for embedding in self.categorical:
            nn.init.uniform_(embedding.weight[1:], -bound, bound)
        self.field_attention = nn.TransformerEncoderLayer(
            embed_dim, n_heads, dim_feedforward=2 * embed_dim, dropout=dropout,
            batch_first=True, norm_first=True,
        )

    def forward(self, numeric, categorical):
        tokens = [numeric[:, :, None] * self.numeric_weight + self.numeric_bias]
        tokens += [emb(categorical[:, j])[:, None, :] for j, emb in enumerate(self.categorical)]
        return self.field_attention(torch.cat(tokens, dim=1))


class MetadataMLP(nn.Module):
    """Flat metadata embedding: a two-layer MLP plus a linear shortcut.

    The shortcut keeps a linear model within reach, which matters on the small
    tabular cohorts typical of BMD studies.
    """

    def __init__(self, n_numeric, cardinalities, *, embed_dim=64, dropout=0.1, category_dim=4):
        super().__init__()
        self.categorical = nn.ModuleList(nn.Embedding(c + 1, category_dim) for c in cardinalities)
        in_dim = n_numeric + category_dim * len(cardinalities)
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, embed_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(embed_dim, embed_dim),
        )
        self.linear = nn.Linear(in_dim, embed_dim)

    def forward(self, numeric, categorical):
        parts = [numeric] + [emb(categorical[:, j]) for j, emb in enumerate(self.categorical)]
        flat = torch.cat(parts, dim=1)
        return self.mlp(flat) + self.linear(flat)
