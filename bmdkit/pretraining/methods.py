"""Self-supervised objectives for a backbone: SimMIM (the default) and lightly's SimCLR.

Each method is a module holding the backbone and a head whose
``forward(views)`` returns the loss of a batch of two views of the same
images; each is built with the views' size (``image_size=``), which a method
may check its backbone against. SimMIM, the default, was chosen by measurement
over SimCLR (and VICReg, since removed) on the SYNTHETIC phantoms
(docs/pretraining.md).
SimCLR's head and loss are lightly's (https://docs.lightly.ai), the
maintained implementation of the paper; lightly's masked image modelling is
for vision transformers only, so SimMIM's linear decoder and L1 loss (about
twenty lines) are written here for the CNN backbones. A new method is a class
here and its name in :data:`METHODS`.
"""

from __future__ import annotations

import math

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from bmdkit.errors import ParameterError
from bmdkit.params import Options, check_param

__all__ = ["METHODS", "SimCLR", "SimMIM", "make_method"]


def pooled(backbone, images):
    """The backbone's features of ``images``, averaged over positions: ``(B, C)``."""
    features = backbone.forward_features(images)
    return features.mean(dim=(2, 3)) if features.ndim == 4 else features.mean(dim=1)


class SimCLR(nn.Module):
    """SimCLR (Chen et al. 2020): the NT-Xent contrastive loss between two views.

    Each image's two views must be nearer each other, in the projection
    head's space, than to the other images of the batch. ``image_size`` is
    not used: the features are pooled, any size goes.
    """

    def __init__(self, backbone, *, image_size=None, hidden_dim=512, out_dim=128,
                 temperature=0.2):
        super().__init__()
        self.backbone = backbone
        self.head = SimCLRProjectionHead(backbone.num_features, hidden_dim, out_dim)
        self.criterion = NTXentLoss(temperature=temperature)

    def forward(self, views):
        first, second = (self.head(pooled(self.backbone, view)) for view in views)
        return self.criterion(first, second)


class SimMIM(nn.Module):
    """SimMIM (Xie et al. 2022) for a CNN: predict the pixels of masked patches.

    Each square ``patch_size``-pixel patch of a view is masked with
    probability ``mask_ratio``: set to 0 (the mean grey level of the
    normalised images). A linear decoder (a 1 x 1 convolution and a pixel
    shuffle by the backbone's stride, the paper's) predicts every pixel from
    the backbone's last feature map; the loss is the mean absolute error on
    the masked pixels. Unlike
    SimCLR, which keeps what two views share, the objective needs the grey
    levels themselves, which in a radiograph carry the bone mineral.

    Parameters
    ----------
    backbone : torch.nn.Module
        A timm CNN (``forward_features`` gives ``(B, C, h, w)``, ``C`` its
        ``num_features``).
    image_size : int, default=64
        Side of the square views; the backbone is probed with it at once, so
        one that cannot fill such an image from its feature map (a vision
        transformer, an unpadded CNN) is refused before any image is read.
    patch_size : int, default=8
        Side of the masked patches, in pixels.
    mask_ratio : float, default=0.6
        Probability that a patch is masked (the paper's ratio). Fine-tuned on
        the SYNTHETIC phantoms, each default did best when varied alone: 4, 8,
        16 px at 0.6, and 0.4, 0.6, 0.8 at 8 px (docs/pretraining.md).

    Examples
    --------
    >>> import timm
    >>> backbone = timm.create_model("resnet10t", in_chans=1, num_classes=0, global_pool="")
    >>> method = SimMIM(backbone, image_size=32)
    >>> loss = method([torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32)])
    >>> loss.ndim, bool(loss > 0)
    (0, True)
    """

    def __init__(self, backbone, *, image_size=64, patch_size=8, mask_ratio=0.6):
        super().__init__()
        self.backbone = backbone
        self.patch_size = patch_size
        self.mask_ratio = mask_ratio
        stride = _check_feature_map(backbone, image_size)
        self.decoder = nn.Sequential(nn.Conv2d(backbone.num_features, stride ** 2, 1),
                                     nn.PixelShuffle(stride))

    def forward(self, views):
        return sum(self._loss(view) for view in views) / len(views)

    def _loss(self, images):
        batch, _, height, width = images.shape
        size = self.patch_size
        grid = (math.ceil(height / size), math.ceil(width / size))
        mask = torch.rand(batch, 1, *grid, device=images.device) < self.mask_ratio
        mask = mask.repeat_interleave(size, 2).repeat_interleave(size, 3)[..., :height, :width]
        mask = mask.to(images.dtype)
        reconstruction = self.decoder(self.backbone.forward_features(images * (1 - mask)))
        error = (reconstruction[..., :height, :width] - images).abs() * mask
        return error.sum() / mask.sum(dtype=torch.float32).clamp_min(1)


def _check_feature_map(backbone, image_size):
    """The stride of ``backbone``'s last feature map, refusing one that cannot be decoded
    into an ``image_size`` image (a ParameterError naming the model)."""
    name = getattr(backbone, "pretrained_cfg", {}).get("architecture", type(backbone).__name__)
    problem = (f"method='simmim' needs a convolutional timm backbone whose last feature map "
               f"(B, C, h, w) tiles the image at its stride, which {name!r} does not")
    advice = "; use a CNN backbone or method='simclr'"
    try:
        stride = backbone.feature_info[-1]["reduction"]
    except (AttributeError, IndexError, KeyError, TypeError):
        raise ParameterError(f"{problem} (it has no timm feature_info){advice}") from None
    first = next(backbone.parameters())
    probe = torch.zeros(1, first.shape[1] if first.ndim == 4 else 1, image_size, image_size,
                        dtype=first.dtype, device=first.device)
    modes = {module: module.training for module in backbone.modules()}
    backbone.eval()  # leaves batch-norm statistics as they are
    try:
        with torch.no_grad():
            features = backbone.forward_features(probe)
    except (RuntimeError, ValueError, AssertionError) as error:  # e.g. fixed to another size
        raise ParameterError(f"{problem}: at image_size={image_size} it fails ({error})"
                             f"{advice}") from error
    finally:
        for module, training in modes.items():
            module.training = training
    shape, side = tuple(features.shape), math.ceil(image_size / stride)
    if shape != (1, backbone.num_features, side, side):
        raise ParameterError(f"{problem}: at image_size={image_size} its features have shape "
                             f"{shape}, not (1, {backbone.num_features}, {side}, {side}){advice}")
    return stride


#: The methods of ``bmdkit pretrain --method``.
METHODS = {"simmim": SimMIM, "simclr": SimCLR}


def make_method(name, backbone, image_size):
    """The method ``name`` of :data:`METHODS` around ``backbone`` for ``image_size`` px views.

    An unknown name is a ParameterError (a ValueError) naming the methods.
    """
    check_param("method", name, Options(METHODS))
    return METHODS[name](backbone, image_size=image_size)
