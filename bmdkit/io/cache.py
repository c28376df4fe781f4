"""Loading many radiographs as one preprocessed array, decoding each once."""

from __future__ import annotations

import os

import numpy as np

from bmdkit.io.readers import read_image
from bmdkit.io.transforms import resize_with_padding

__all__ = ["load_images"]

_MEMORY_CACHE = {}


def _key(path, image_size, contrast):
    st = os.stat(path)
    return (os.path.abspath(path), st.st_mtime_ns, st.st_size, image_size, contrast)


def _normalise(image, contrast):
    if contrast == "percentile":
        lo, hi = np.percentile(image, [0.5, 99.5])
        return np.clip((image - lo) / (hi - lo), 0, 1) if hi > lo else image
    return image


def load_images(paths, *, image_size, contrast="percentile", cache_dir=None):
    """Read and resize images, returning ``(n, image_size, image_size)`` float32.

    Minimal in-process version; ``cache_dir`` is accepted for the on-disk cache.
    """
    out = np.empty((len(paths), image_size, image_size), np.float32)
    for i, path in enumerate(paths):
        key = _key(path, image_size, contrast)
        if key not in _MEMORY_CACHE:
            _MEMORY_CACHE[key] = resize_with_padding(_normalise(read_image(path), contrast), image_size)
        out[i] = _MEMORY_CACHE[key]
    return out
