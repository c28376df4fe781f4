"""Deterministic image preprocessing to the network's input size."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["resize_with_padding"]


def resize_with_padding(image, size):
    """Resize a 2-D image to ``size × size`` keeping its aspect ratio, zero-padded."""
    h, w = image.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = np.asarray(
        Image.fromarray(image.astype(np.float32), mode="F").resize((nw, nh), Image.BILINEAR)
    )
    out = np.zeros((size, size), np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = resized
    return out
