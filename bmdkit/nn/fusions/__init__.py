"""Fusions of image tokens and metadata: one module per fusion behind one registry.

Every fusion is a :class:`Fusion`: built by :func:`create_fusion` from the
same keyword arguments, it takes image tokens ``(B, N, d)`` (or ``None`` for
a metadata-only fusion), numeric ``(B, p)`` and categorical ``(B, q)``
metadata, and returns one vector ``(B, out_features)`` for the regression
head. The built-in fusions are listed, with their labels and named estimators,
in :data:`bmdkit.registry.FUSIONS`; add one of your own by subclassing
:class:`Fusion` and decorating it with :func:`register_fusion`.

Examples
--------
>>> import torch
>>> from bmdkit.nn.fusions import create_fusion, fusion_names
>>> fusion_names()
('xattn', 'concat', 'daft', 'gated', 'late', 'image', 'metadata')
>>> fusion = create_fusion("concat", embed_dim=8, n_numeric=2, cardinalities=[3])
>>> fusion(torch.randn(4, 5, 8), torch.randn(4, 2), torch.tensor([[0], [1], [2], [3]])).shape
torch.Size([4, 16])
"""

from bmdkit.nn.fusions.base import (
    Fusion,
    create_fusion,
    fusion_class,
    fusion_names,
    register_fusion,
)
from bmdkit.nn.fusions.concat import ConcatFusion
from bmdkit.nn.fusions.daft import DAFTFusion
from bmdkit.nn.fusions.gated import GatedFusion
from bmdkit.nn.fusions.late import LateFusion
from bmdkit.nn.fusions.single import ImageOnlyFusion, MetadataOnlyFusion
from bmdkit.nn.fusions.xattn import (
    BidirectionalCrossAttention,
    CrossAttentionBlock,
    MetadataPositionPooling,
    XAttnFusion,
)

__all__ = [
    "BidirectionalCrossAttention", "ConcatFusion", "CrossAttentionBlock", "DAFTFusion", "Fusion",
    "GatedFusion", "ImageOnlyFusion", "LateFusion", "MetadataOnlyFusion", "MetadataPositionPooling",
    "XAttnFusion",
    "create_fusion", "fusion_class", "fusion_names", "register_fusion",
]
