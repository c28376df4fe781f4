"""Reading radiographs into 2-D float32 arrays in [0, 1]."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

__all__ = ["read_image"]

DICOM_SUFFIXES = (".dcm", ".dicom")


def read_image(path):
    """Read a radiograph as a 2-D float32 array scaled to [0, 1].

    Parameters
    ----------
    path : str or os.PathLike
        PNG, JPEG, TIFF, BMP or DICOM file.

    Returns
    -------
    ndarray of shape (H, W), float32
    """
    path = os.fspath(path)
    if path.lower().endswith(DICOM_SUFFIXES):
        import pydicom

        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.astype(np.float32)
        if pixels.ndim == 3:
            pixels = pixels.mean(axis=-1)
        if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
            pixels = pixels.max() - pixels
    else:
        with Image.open(path) as img:
            if img.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
                img = img.convert("L")
            pixels = np.asarray(img, dtype=np.float32)
    lo, hi = float(pixels.min()), float(pixels.max())
    return (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
