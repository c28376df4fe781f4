"""A Secondary Capture of the saliency map over the film, beside the Structured Report.

The film as the network saw it (contrast-normalised, at its input size) in
grey, the saliency map of :func:`bmdkit.explain.explain` in a heat colour map
over it, enlarged to at least 256 px, as an RGB Secondary Capture image in
the source's patient and study (highdicom ``SCImage``), labelled
RESEARCH USE ONLY.
"""

from __future__ import annotations

import numpy as np

__all__ = ["blend", "build_overlay"]


def blend(image, saliency, *, alpha=0.6, min_size=256):
    """RGB uint8 of ``image`` (2-D, [0, 1]) with ``saliency`` (2-D, >= 0) over it in 'inferno'.

    Pixel attributions are sparse: the map is smoothed (Gaussian, sigma 1/32 of
    the side) and scaled to its 99th percentile, so that regions, not single
    pixels, show; its opacity grows with its value, up to ``alpha``.

    Examples
    --------
    >>> rgb = blend(np.zeros((32, 32)), np.ones((32, 32)))
    >>> rgb.shape, rgb.dtype.name
    ((256, 256, 3), 'uint8')
    """
    from matplotlib import colormaps
    from scipy.ndimage import gaussian_filter

    image = np.clip(np.asarray(image, dtype=np.float64), 0, 1)
    heat = gaussian_filter(np.asarray(saliency, dtype=np.float64), max(image.shape) / 32)
    top = np.percentile(heat, 99)
    heat = np.clip(heat / top, 0, 1) if top > 0 else np.zeros_like(heat)
    rgb = (1 - alpha * heat[..., None]) * image[..., None] \
        + alpha * heat[..., None] * colormaps["inferno"](heat)[..., :3]
    factor = max(1, int(np.ceil(min_size / max(image.shape))))
    rgb = np.kron(rgb, np.ones((factor, factor, 1)))
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _laterality(source):
    """The source's laterality (Laterality, else ImageLaterality), "L" or "R", else None."""
    for keyword in ("Laterality", "ImageLaterality"):
        if str(source.get(keyword, "")) in ("L", "R"):
            return str(source.get(keyword))
    return None


def build_overlay(source, image, saliency, card, *, series_number=9502):
    """The Secondary Capture (highdicom ``SCImage``) of :func:`blend` for the image ``source``."""
    from highdicom import sc

    from bmdkit.dicomnode.card import derived_uid

    return sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=blend(image, saliency),
        photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
        series_instance_uid=derived_uid(source.StudyInstanceUID, card.checksum, "sc-series"),
        series_number=series_number,
        sop_instance_uid=derived_uid(source.SOPInstanceUID, card.checksum, "sc"),
        instance_number=int(source.get("InstanceNumber") or 1), manufacturer="bmdkit",
        patient_orientation=("L", "F"), laterality=_laterality(source),
        series_description="BMD saliency map - RESEARCH USE ONLY")
