"""Training-time radiograph augmentation, batched on the model's device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ModalityDropout", "RadiographAugment"]


class RadiographAugment(nn.Module):
    """Random small rotation, shift, scale, brightness/contrast and noise.

    Active only in training mode; the identity in ``eval()`` mode, so
    predictions never see it. Randomness comes from torch's global generator,
    which the estimators seed from ``random_state``.

    Parameters
    ----------
    rotation : float, default=5.0
        Maximum absolute rotation in degrees.
    shift : float, default=0.04
        Maximum shift as a fraction of the image side.
    scale : float, default=0.05
        Maximum relative zoom in or out.
    brightness, contrast : float, default=0.05, 0.1
        Maximum additive brightness and relative contrast change.
    noise : float, default=0.01
        Standard deviation of additive Gaussian noise.
    """

    def __init__(self, rotation=5.0, shift=0.04, scale=0.05, brightness=0.05, contrast=0.1,
                 noise=0.01):
        super().__init__()
        self.rotation = rotation
        self.shift = shift
        self.scale = scale
        self.brightness = brightness
        self.contrast = contrast
        self.noise = noise

    def forward(self, image):
        if not self.training:
            return image
        b = image.shape[0]
        opts = dict(device=image.device, dtype=image.dtype)

        def uniform(limit):
            return (torch.rand(b, **opts) * 2 - 1) * limit

        angle = uniform(math.radians(self.rotation))
        zoom = 1 + uniform(self.scale)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, uniform(2 * self.shift)], 1),
             torch.stack([sin, cos, uniform(2 * self.shift)], 1)], 1
        )
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        image = F.grid_sample(image, grid, padding_mode="zeros", align_corners=False)
        mean = image.mean(dim=(1, 2, 3), keepdim=True)
        image = (image - mean) * (1 + uniform(self.contrast)).view(b, 1, 1, 1) + mean
        image = image + uniform(self.brightness).view(b, 1, 1, 1)
        return image + self.noise * torch.randn_like(image)


class ModalityDropout(nn.Module):
    """Hide the image of a random share ``p`` of the rows while training.

    Returns which rows have no image: those marked missing, and in training
    mode also a random ``p`` of the others, so the network learns to predict
    from the metadata alone (with its learned "no image" token in place of
    the image tokens, :meth:`bmdkit.nn.Fusion.mask_image`). The identity on
    the marks in ``eval()`` mode.

    Parameters
    ----------
    p : float in [0, 1), default=0.0

    Examples
    --------
    >>> import torch
    >>> dropout = ModalityDropout(0.5).eval()
    >>> dropout(torch.tensor([True, False]), 2, "cpu").tolist()
    [True, False]
    >>> print(dropout(None, 2, "cpu"))
    None
    """

    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(self, missing, n, device):
        if not (self.training and self.p > 0):
            return missing
        dropped = torch.rand(n, device=device) < self.p
        return dropped if missing is None else missing.to(torch.bool) | dropped
