"""Reading radiographs into 2-D float32 arrays in [0, 1], bone bright.

Raster formats (PNG, TIFF, JPEG, BMP) are read with Pillow, DICOM with
pydicom. Compressed DICOM: JPEG 2000 (lossless and lossy) is decoded by
pylibjpeg with pylibjpeg-openjpeg; JPEG Lossless (process 14) and JPEG-LS by
python-gdcm; 8-bit JPEG baseline by Pillow; RLE and deflate natively (all
declared dependencies of bmdkit). 12-bit JPEG Extended needs the GPL-licensed
``pylibjpeg-libjpeg``, which bmdkit does not pull in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from bmdkit.errors import MissingFileError

__all__ = ["ImageInfo", "dicom_files", "header_problem", "read_image"]

DICOM_SUFFIXES = (".dcm", ".dicom")
#: ITU-R BT.601 luma weights, the ones Pillow's ``convert("L")`` uses.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def dicom_files(root):
    """The DICOM files under the folder ``root``, relative to it, sorted (POSIX separators).

    Files ending in ``.dcm`` or ``.dicom`` or without a suffix (as PACS
    exports often are), hidden files and folders left out.

    Raises
    ------
    bmdkit.errors.MissingFileError
        When ``root`` is not a folder (a FileNotFoundError).
    """
    from pathlib import Path

    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"DICOM folder {root} is not a folder")
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if p.is_file() and (p.suffix.lower() in DICOM_SUFFIXES or not p.suffix)
        and not any(part.startswith(".") for part in p.relative_to(root).parts))


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image` learnt about a file besides its pixels.

    Attributes
    ----------
    format : str
        ``"DICOM"`` or Pillow's format name (``"PNG"``, ``"JPEG"``, ``"TIFF"``, ...).
    shape : tuple of int
        ``(rows, columns)`` of the returned image.
    pixel_spacing : tuple of float or None
        ``(row, column)`` spacing in mm: DICOM Pixel Spacing, else Imager
        Pixel Spacing; ``None`` when absent or zero, and for raster formats
        (their DPI tags rarely describe the detector).
    photometric : str
        ``"MONOCHROME1"`` (stored inverted, inverted back on reading),
        ``"MONOCHROME2"``, ``"RGB"``... for DICOM; Pillow's mode otherwise.
    n_frames : int
        Frames in the file; only the first is read.
    windowed : bool
        Whether a DICOM VOI LUT or window was applied.
    """

    format: str
    shape: tuple
    pixel_spacing: tuple | None
    photometric: str
    n_frames: int = 1
    windowed: bool = False


def read_image(path, *, return_info=False, apply_voi=True):
    """Read a radiograph as a 2-D float32 array scaled to [0, 1], bone bright.

    Colour images become luma (BT.601 weights); multi-frame files give their
    first frame. Integer raster images are divided by their type's maximum
    (255 or 65535), so exposure differences survive; DICOM pixels go through
    the modality LUT (rescale slope/intercept), the VOI LUT or window when
    the file has one (``apply_voi``), are inverted when MONOCHROME1, and are
    then scaled by their own minimum and maximum.

    Parameters
    ----------
    path : str or os.PathLike
        PNG, JPEG, TIFF, BMP or DICOM file. A file is read as DICOM when
        its name ends in ``.dcm``/``.dicom`` or it has the DICOM preamble
        (``DICM`` at byte 128); any other file is read with Pillow.
    return_info : bool, default=False
        Also return an :class:`ImageInfo` (pixel spacing and the like).
    apply_voi : bool, default=True
        Apply a DICOM file's VOI LUT or window (its intended display
        contrast). Narrow windows, such as a CT soft-tissue window, clip.

    Returns
    -------
    image : ndarray of shape (rows, columns), float32
    info : ImageInfo
        Only when ``return_info=True``.

    Raises
    ------
    ValueError
        When the file holds no pixels, non-finite pixels or a single
        constant value; the message starts with the path.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> from bmdkit.io import read_image
    >>> path = os.path.join(tempfile.mkdtemp(), "hip.png")
    >>> Image.fromarray(np.array([[0, 32768], [65535, 0]], np.uint16)).save(path)
    >>> image, info = read_image(path, return_info=True)
    >>> image.round(2).tolist(), info.format, info.pixel_spacing
    ([[0.0, 0.5], [1.0, 0.0]], 'PNG', None)
    """
    path = os.fspath(path)
    if path.lower().endswith(DICOM_SUFFIXES) or _has_dicom_preamble(path):
        image, info = _read_dicom(path, apply_voi)
    else:
        image, info = _read_raster(path)
    if image.size == 0:
        raise ValueError(f"{path}: empty image: it has no pixels")
    if not np.isfinite(image).all():
        raise ValueError(f"{path}: image has NaN or infinite pixel values")
    if image.min() == image.max():
        raise ValueError(f"{path}: blank image: every pixel has the same value")
    return (image, info) if return_info else image


def header_problem(path):
    """Why the file at ``path`` is not an image :func:`read_image` can open, or None.

    A quick look at the header only (no pixels are decoded): a DICOM file
    must parse and hold pixel data, any other file must be an image format
    Pillow knows. A file whose pixels turn out damaged passes here and is
    named when it is decoded (:func:`bmdkit.io.load_images`).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.png")
    >>> _ = open(path, "w").write("not an image")
    >>> header_problem(path)
    'not an image file Pillow can read (UnidentifiedImageError)'
    """
    path = os.fspath(path)
    try:
        if path.lower().endswith(DICOM_SUFFIXES) or _has_dicom_preamble(path):
            import pydicom

            ds = pydicom.dcmread(path, defer_size="1 KB")
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                return "DICOM file without pixel data (e.g. a structured report)"
            return None
        with Image.open(path):
            return None
    except Exception as error:  # any parser failure means: not an image we can read
        if isinstance(error, OSError) and not isinstance(error, Image.UnidentifiedImageError):
            return f"cannot be read ({error})"
        what = ("a DICOM file" if path.lower().endswith(DICOM_SUFFIXES)
                else "an image file Pillow can read")
        return f"not {what} ({type(error).__name__})"


def _has_dicom_preamble(path):
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def _read_raster(path):
    with Image.open(path) as img:
        fmt, n_frames = img.format, getattr(img, "n_frames", 1)
        img = ImageOps.exif_transpose(img)
        mode = img.mode
        if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            img = img.convert("RGBA" if "A" in mode or "transparency" in img.info else "RGB")
        pixels = np.asarray(img)
    if pixels.ndim == 3:  # colour, maybe with alpha: drop alpha, take luma
        pixels = pixels[..., :3] @ LUMA_WEIGHTS if pixels.shape[-1] >= 3 else pixels[..., 0]
    if np.issubdtype(pixels.dtype, np.integer) and pixels.dtype.itemsize <= 2:
        image = (pixels / np.iinfo(pixels.dtype).max).astype(np.float32)
    elif pixels.dtype == bool:
        image = pixels.astype(np.float32)
    else:  # 32-bit integer or float images: no fixed range
        image = _minmax(pixels)
    return image, ImageInfo(fmt or "unknown", image.shape, None, mode, n_frames)


def _read_dicom(path, apply_voi):
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

    ds = pydicom.dcmread(path)
    pixels = pixel_array(ds, index=0)  # decodes the first frame only
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    windowed = False
    if pixels.ndim == 3:  # RGB (YBR is converted to RGB by pydicom)
        pixels = pixels @ LUMA_WEIGHTS
    else:
        pixels = apply_modality_lut(pixels, ds)
        windowed = apply_voi and ("VOILUTSequence" in ds or "WindowCenter" in ds)
        if windowed:
            pixels = apply_voi_lut(pixels, ds, index=0)
    image = _minmax(pixels)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
    info = ImageInfo("DICOM", image.shape, _pixel_spacing(ds), photometric,
                     int(ds.get("NumberOfFrames", 1) or 1), windowed)
    return image, info


def _pixel_spacing(ds):
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            return (float(value[0]), float(value[1]))
    return None


def _minmax(pixels):
    pixels = np.asarray(pixels, dtype=np.float64)
    lo, hi = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    scaled = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    return scaled.astype(np.float32)
