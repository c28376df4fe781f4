"""One modality alone: the image-only and metadata-only baselines."""

from __future__ import annotations

from bmdkit.nn.fusions.base import Fusion
from bmdkit.nn.tokenizers import MetadataMLP

__all__ = ["ImageOnlyFusion", "MetadataOnlyFusion"]


class ImageOnlyFusion(Fusion):
    """The mean image token; the metadata is not read."""

    uses_metadata = False

    def __init__(self, *, embed_dim, dropout=0.1, **sizes):
        super().__init__(embed_dim=embed_dim, dropout=dropout, **sizes)
        self.out_features = embed_dim

    def forward(self, image_tokens, numeric, categorical, image_positions=None):
        return image_tokens.mean(1)


class MetadataOnlyFusion(Fusion):
    """The metadata MLP embedding; no image is read (nor needed)."""

    uses_image = False

    def __init__(self, *, embed_dim, n_numeric=0, cardinalities=(), dropout=0.1, **sizes):
        super().__init__(embed_dim=embed_dim, dropout=dropout, **sizes)
        self.metadata_mlp = MetadataMLP(n_numeric, cardinalities, embed_dim=embed_dim,
                                        dropout=dropout)
        self.out_features = embed_dim

    def forward(self, image_tokens, numeric, categorical, image_positions=None):
        return self.metadata_mlp(numeric, categorical)
