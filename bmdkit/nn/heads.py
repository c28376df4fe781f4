"""Regression heads."""

from __future__ import annotations

from torch import nn

__all__ = ["RegressionHead"]


class RegressionHead(nn.Module):
    """``in_dim`` → hidden → ``n_outputs``, with layer norm, GELU and dropout."""

    def __init__(self, in_dim, *, hidden_dim=64, dropout=0.1, n_outputs=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden_dim), nn.GELU(),
            nn.Dropout(dropout), nn.Linear(hidden_dim, n_outputs),
        )

    def forward(self, x):
        return self.layers(x)
