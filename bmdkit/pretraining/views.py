"""Random views of a radiograph for self-supervised pretraining.

Radiographs are not photographs: there is no colour to jitter, and a
left-right flip turns a right hip into a left one, a difference the
estimators read (the R/L marker, the side of the film). The views change
what varies between films of one hip: framing (crop and resize),
positioning (small rotation), focal spot and detector blur, quantum noise
and, when asked for, exposure and reader processing (intensity window and
gamma). The intensity changes are off by default: in a radiograph the BMD
signal is grey level, a contrastive method learns to ignore what its views
change, and on the SYNTHETIC phantoms SimCLR pretraining without them did as
well or better (docs/pretraining.md; not measured with SimMIM).
"""

from __future__ import annotations

import torch
from lightly.transforms.multi_view_transform import MultiViewTransform
from torchvision.transforms import v2

__all__ = ["RandomWindowGamma", "radiograph_views"]


class RandomWindowGamma(torch.nn.Module):
    """Random intensity window and gamma of an image in [0, 1].

    The grey levels ``[low, high]`` are stretched to ``[0, 1]`` (``low`` up to
    ``window``, ``high`` down to ``1 - window``), then raised to a gamma drawn
    log-uniformly from ``[1 / gamma, gamma]``: a film read with another
    window and look-up table.

    Examples
    --------
    >>> image = torch.linspace(0, 1, 16).reshape(1, 4, 4)
    >>> out = RandomWindowGamma(window=0.1, gamma=1.5)(image)
    >>> out.shape, bool(out.min() >= 0), bool(out.max() <= 1)
    (torch.Size([1, 4, 4]), True, True)
    """

    def __init__(self, window=0.1, gamma=1.5):
        super().__init__()
        self.window = window
        self.gamma = gamma

    def forward(self, image):
        low, high = torch.rand(2) * self.window
        log_gamma = (torch.rand(()) * 2 - 1) * torch.log(torch.tensor(float(self.gamma)))
        image = ((image - low) / (1 - high - low)).clamp(0, 1)
        return image ** log_gamma.exp()


def radiograph_views(image_size, *, n_views=2, crop_scale=(0.5, 1.0), rotation=10.0,
                     window=0.0, gamma=1.0, blur_sigma=(0.1, 1.0), noise=0.02):
    """The transform making ``n_views`` random views of one ``(1, H, W)`` image in [0, 1].

    A :class:`lightly.transforms.multi_view_transform.MultiViewTransform` of
    torchvision transforms: random resized crop (``crop_scale`` of the area,
    aspect ratio 4:5 to 5:4), rotation up to ``rotation`` degrees, intensity
    window and gamma (:class:`RandomWindowGamma`; off with the defaults
    ``window=0``, ``gamma=1``; e.g. ``window=0.1, gamma=1.5`` turns it on),
    Gaussian blur (half of the views) and Gaussian noise of standard
    deviation ``noise``. No colour jitter and no flip.

    Examples
    --------
    >>> views = radiograph_views(32)(torch.rand(1, 40, 40))
    >>> len(views), tuple(views[0].shape)
    (2, (1, 32, 32))
    """
    view = v2.Compose([
        v2.RandomResizedCrop(image_size, scale=crop_scale, ratio=(0.8, 1.25), antialias=True),
        v2.RandomRotation(rotation),
        RandomWindowGamma(window, gamma),
        v2.RandomApply([v2.GaussianBlur(5, sigma=blur_sigma)], p=0.5),
        v2.GaussianNoise(sigma=noise),
    ])
    return MultiViewTransform([view] * n_views)
