"""Deterministic image preprocessing to the network's input: contrast, then size.

Training-time augmentation (rotation, shift, scale, brightness/contrast,
noise) is not here: it runs batched on the model's device in
:class:`bmdkit.nn.augment.RadiographAugment`, only while training.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from bmdkit.params import Options, check_param

__all__ = ["CONTRASTS", "normalise_contrast", "resize_with_padding"]

#: Contrast normalisations :func:`normalise_contrast` knows.
CONTRASTS = ("percentile", "minmax", "none")


def normalise_contrast(image, method="percentile", *, percentiles=(0.5, 99.5)):
    """Stretch an image's grey levels to [0, 1].

    Parameters
    ----------
    image : ndarray of shape (H, W)
    method : {"percentile", "minmax", "none"}, default="percentile"
        ``"percentile"`` maps the ``percentiles`` to 0 and 1 and clips, so a
        few hot or dead pixels or a burnt-in label do not set the range;
        ``"minmax"`` maps the minimum and maximum to 0 and 1; ``"none"``
        keeps the reader's scaling (the file's own exposure).
    percentiles : (float, float), default=(0.5, 99.5)

    Returns
    -------
    ndarray of shape (H, W), float32

    Examples
    --------
    >>> import numpy as np
    >>> normalise_contrast(np.array([[0.0, 0.5], [2.0, 2.0]]), "minmax").tolist()
    [[0.0, 0.25], [1.0, 1.0]]
    """
    check_param("contrast", method, Options(CONTRASTS))
    image = np.asarray(image, dtype=np.float32)
    if method == "none":
        return image
    lo, hi = (np.percentile(image, percentiles) if method == "percentile"
              else (image.min(), image.max()))
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def resize_with_padding(image, size):
    """Resize a 2-D image to ``size × size`` keeping its aspect ratio, zero-padded.

    Examples
    --------
    >>> import numpy as np
    >>> resize_with_padding(np.ones((20, 10), np.float32), 8)[:, [0, 2, 5, 7]].tolist()[0]
    [0.0, 1.0, 1.0, 0.0]
    """
    h, w = image.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = np.asarray(
        Image.fromarray(image.astype(np.float32)).resize((nw, nh), Image.BILINEAR)
    )
    out = np.zeros((size, size), np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = resized
    return out
