"""Generated radiograph-sized files for the bench (SYNTHETIC images, not clinical)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from bmdkit.errors import ParameterError

__all__ = ["make_radiograph_files", "phantom_rendering", "radiograph_cohort"]

DISTINCT_FILES = 8  # distinct generated radiographs; the rest are byte copies (decode cost is equal)


def make_radiograph_files(n, shape, out_dir, random_state=0, file_format="png"):
    """Write ``n`` radiograph-sized 16-bit images (smooth anatomy-like shapes plus noise).

    ``file_format`` is ``"png"`` or ``"dicom"`` (uncompressed MONOCHROME2,
    explicit VR little endian). Only :data:`DISTINCT_FILES` images are
    rendered; the other files are byte copies under their own names, which
    cost the same to decode.

    Returns
    -------
    list of str
        The file paths.
    """
    if file_format not in ("png", "dicom"):
        raise ParameterError(f"file_format must be 'png' or 'dicom', got {file_format!r}")
    rng = np.random.default_rng(random_state)
    rows, cols = shape
    yy, xx = np.mgrid[:rows, :cols].astype(np.float32)
    yy, xx = yy / rows, xx / cols
    suffix = {"png": "png", "dicom": "dcm"}[file_format]
    encoded = []
    for _ in range(min(n, DISTINCT_FILES)):
        cy, cx, r = rng.uniform(0.3, 0.5), rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.2)
        image = (12000 + 20000 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
                 + 9000 * (np.abs(xx - cx - 0.1 * (yy - cy)) < 0.06) * (yy > cy)
                 + rng.normal(0, 400, shape).astype(np.float32))
        pixels = np.clip(image, 0, 65535).astype(np.uint16)
        path = Path(out_dir) / f"distinct_{len(encoded)}.{suffix}"
        if file_format == "png":
            Image.fromarray(pixels).save(path)
        else:
            _save_dicom(pixels, path)
        encoded.append(path.read_bytes())
    paths = []
    for i in range(n):
        path = Path(out_dir) / f"radiograph_{i:05d}.{suffix}"
        path.write_bytes(encoded[i % len(encoded)])
        paths.append(str(path))
    return paths


def _save_dicom(pixels, path):
    """An uncompressed 16-bit MONOCHROME2 DICOM file of ``pixels`` (0.2 mm pixel spacing)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Modality, ds.PixelSpacing = "DX", [0.2, 0.2]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def radiograph_cohort(n, shape, out_dir, random_state=0, file_format="png"):
    """Demo-cohort metadata and targets with radiograph-sized image files (SYNTHETIC)."""
    from bmdkit.datasets import make_synthetic_cohort

    X, y = make_synthetic_cohort(n=n, image_size=16, random_state=random_state,
                                 out_dir=Path(out_dir) / "thumbnails")
    X["image_path"] = make_radiograph_files(n, shape, out_dir, random_state, file_format)
    return X, y


def phantom_rendering(n, image_size, view="pelvis", random_state=0):
    """Seconds to render ``n`` phantom films in memory, and to measure their DXA truth.

    The films of :func:`bmdkit.datasets.make_synthetic_cohort` (SYNTHETIC),
    without writing files: drawing the population, building each skeleton,
    rendering the film (``render_s``) and measuring the femoral neck and
    total hip (``dxa_s``), one process.

    Examples
    --------
    >>> figures = phantom_rendering(2, 64)
    >>> sorted(figures)
    ['dxa_s', 'films_per_s', 'image_size', 'n', 'render_s', 'view']
    """
    from bmdkit.phantoms import (
        draw_metadata,
        draw_population,
        draw_positioning,
        measure,
        render,
    )
    from bmdkit.phantoms.anatomy import skeleton

    rng = np.random.default_rng(random_state)
    population = draw_population(draw_metadata(n, rng), rng)
    positioning = draw_positioning(n, rng)
    render_s = dxa_s = 0.0
    for i in range(n):
        p = {**population.iloc[i].to_dict(), **positioning.iloc[i].to_dict()}
        start = time.perf_counter()
        bones = skeleton(p)
        render(p, view, "right", image_size, rng, bones)
        middle = time.perf_counter()
        measure(p, bones, "right")
        render_s += middle - start
        dxa_s += time.perf_counter() - middle
    return {"n": n, "image_size": image_size, "view": view, "render_s": render_s,
            "dxa_s": dxa_s, "films_per_s": n / render_s}
