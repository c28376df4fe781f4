"""Self-supervised objectives for a backbone: lightly's heads and losses.

Each method is a module holding the backbone and a projection head whose
``forward(views)`` returns the loss of a batch of two views of the same
images. The heads and losses are lightly's (https://docs.lightly.ai), the
maintained implementations of the papers; a new method is a class here and
its name in :data:`METHODS`.
"""

from __future__ import annotations

from lightly.loss import NTXentLoss, VICRegLoss
from lightly.models.modules import BarlowTwinsProjectionHead, SimCLRProjectionHead
from torch import nn

from bmdkit.errors import ParameterError

__all__ = ["METHODS", "SimCLR", "VICReg", "make_method"]


def pooled(backbone, images):
    """The backbone's features of ``images``, averaged over positions: ``(B, C)``."""
    features = backbone.forward_features(images)
    return features.mean(dim=(2, 3)) if features.ndim == 4 else features.mean(dim=1)


class SimCLR(nn.Module):
    """SimCLR (Chen et al. 2020): the NT-Xent contrastive loss between two views.

    Each image's two views must be nearer each other, in the projection
    head's space, than to the other images of the batch.
    """

    def __init__(self, backbone, *, hidden_dim=512, out_dim=128, temperature=0.2):
        super().__init__()
        self.backbone = backbone
        self.head = SimCLRProjectionHead(backbone.num_features, hidden_dim, out_dim)
        self.criterion = NTXentLoss(temperature=temperature)

    def forward(self, views):
        first, second = (self.head(pooled(self.backbone, view)) for view in views)
        return self.criterion(first, second)


class VICReg(nn.Module):
    """VICReg (Bardes et al. 2022): invariance, variance and covariance terms, no negatives."""

    def __init__(self, backbone, *, hidden_dim=512, out_dim=512):
        super().__init__()
        self.backbone = backbone
        self.head = BarlowTwinsProjectionHead(backbone.num_features, hidden_dim, out_dim)
        self.criterion = VICRegLoss()

    def forward(self, views):
        first, second = (self.head(pooled(self.backbone, view)) for view in views)
        return self.criterion(first, second)


#: The methods of ``bmdkit pretrain --method``.
METHODS = {"simclr": SimCLR, "vicreg": VICReg}


def make_method(name, backbone):
    """The method ``name`` of :data:`METHODS` around ``backbone``, or a ValueError naming them."""
    if name not in METHODS:
        raise ParameterError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name](backbone)
