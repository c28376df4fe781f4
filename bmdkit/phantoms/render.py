"""A phantom rendered as a computed radiograph, and the DXA measurement of the same bone.

Along each ray the film sees ``exp(-sum_m mu_m rho_m t_m)`` (Beer-Lambert)
over fat, lean soft tissue and bone mineral (hydroxyapatite; the bone's
organic matrix and marrow count as lean tissue), with the mass attenuation
coefficients of :data:`MU` at the effective energy :data:`EFFECTIVE_KEV`.
Automatic exposure control sets the exposure from the dose behind a central
chamber (the mean transmission there, with a per-film error); a grid leaves
a scatter-to-primary ratio growing with the body's thickness, spread by a
broad kernel; the anode heel effect tilts the exposure along the film; the
focal spot and the detector blur the image; outside the collimated field
only a little scatter arrives; each detector pixel counts quanta (Poisson
noise, as a Gaussian); a lead letter marks the side. The reader takes the
logarithm, compresses the dynamic range (subtracting part of a broad
unsharp mask) and maps the collimated field's histogram to the output range
(exposure recognition), as CR readers do: bone bright, 16 bits. Pixels
larger than :data:`MAX_RAY_SPACING_MM` average several rays (the detector
integrates over its pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from bmdkit.phantoms.anatomy import Grid, project, skeleton, soft_tissue
from bmdkit.phantoms.dxa import measure

__all__ = ["EFFECTIVE_KEV", "FILM_MM", "MU", "Film", "detector", "film_grid", "film_shape", "reader",
           "render", "simulate", "to_pixels"]

#: Effective energy of a 75-85 kVp beam hardened by the patient (keV).
EFFECTIVE_KEV = 45.0
#: Mass attenuation coefficients (cm²/g) at 45 keV and densities (g/cm³): adipose tissue and
#: skeletal muscle (ICRU Report 44 compositions), hydroxyapatite Ca10(PO4)6(OH)2; from the
#: elemental cross-sections of NIST XCOM (Berger et al.; Hubbell & Seltzer 2004), mixed by
#: mass fraction (they reproduce Hubbell & Seltzer's tabulated 40 and 50 keV values).
MU = {"fat": (0.2235, 0.95), "lean": (0.2433, 1.05), "mineral": (0.7437, None)}
#: Film (rows, columns) in mm: AP hip 30 x 24 cm portrait, AP pelvis 35 x 43 cm landscape.
FILM_MM = {"hip": (300.0, 240.0), "pelvis": (350.0, 430.0)}
MAX_RAY_SPACING_MM = 0.6
QUANTA_PER_MM2 = 3.0e4  # detected quanta per mm² at the AEC dose (about 2.5 uGy, DQE ~0.4)
BLUR_MM = 0.2  # focal-spot and detector blur (Gaussian sigma, film plane)
SCATTER_SIGMA_MM = 30.0
DRC_SIGMA_MM = 25.0  # the reader's dynamic-range compression: unsharp-mask kernel
SCATTER_PER_CM = 0.045  # scatter-to-primary ratio per cm of tissue behind a grid
_GREY_SPAN = 44000.0  # grey levels between the 2nd and 98th percentile of the field
COLLIMATED = 0.03  # exposure outside the collimated field, relative (scatter only)
_MARKER = {"R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
           "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"]}


@dataclass
class Film:
    """One rendered film.

    Attributes
    ----------
    image : ndarray of uint16, (rows, columns)
        The radiograph, bone bright.
    bone_path : ndarray of float32, same shape
        Mineral along each pixel's rays, g/cm² (the mineral-only projection).
    pixel_spacing : float
        mm per pixel in the film plane.
    truth : dict
        :func:`bmdkit.phantoms.dxa.measure` of the DXA side, plus
        ``neck_roi``: the neck box's corners in pixel coordinates (x, y), the
        pixel ``(row i, column j)`` covering ``[j, j + 1) x [i, i + 1)``.
    """

    image: np.ndarray
    bone_path: np.ndarray
    pixel_spacing: float
    truth: dict


def film_shape(view, image_size):
    """(rows, columns) of a film of ``view`` whose long side is ``image_size`` pixels."""
    rows_mm, cols_mm = FILM_MM[view]
    spacing = max(rows_mm, cols_mm) / image_size
    return max(1, round(rows_mm / spacing)), max(1, round(cols_mm / spacing)), spacing


def film_centre(p, view, side):
    """The patient point (mm) at the film's centre: the hip of ``side`` or the pelvis."""
    if view == "pelvis":
        centre = np.array([0.0, -20.0])
    else:
        lateral = -1.0 if side == "right" else 1.0
        centre = np.array([lateral * (p["hip_separation"] / 2 + 20.0), 45.0])
    return centre + [p["shift_x"], p["shift_y"]]


def film_grid(p, view, side, image_size, oversample=1):
    """The rays of a film: a :class:`Grid` in patient mm, ``oversample`` rays per pixel side."""
    rows, cols, spacing = film_shape(view, image_size)
    step = spacing / oversample
    centre, mag = film_centre(p, view, side), p["magnification"]
    u = (np.arange(cols * oversample) + 0.5) * step - cols * spacing / 2
    v = (np.arange(rows * oversample) + 0.5) * step - rows * spacing / 2
    return Grid(u / mag + centre[0], v / mag + centre[1])


def to_pixels(points_mm, p, view, side, image_size):
    """Patient points (n, 2) in mm -> (x, y) pixel coordinates of the film."""
    rows, cols, spacing = film_shape(view, image_size)
    centre, mag = film_centre(p, view, side), p["magnification"]
    film = (np.asarray(points_mm) - centre) * mag
    return film / spacing + [cols / 2, rows / 2]


def _block_mean(values, k):
    if k == 1:
        return values
    rows, cols = values.shape[0] // k, values.shape[1] // k
    return values.reshape(rows, k, cols, k).mean(axis=(1, 3))


def _smooth(values, sigma_px):
    """A broad Gaussian blur, computed on a coarse grid and interpolated back."""
    k = max(1, int(sigma_px // 4))
    coarse = _block_mean(values[: values.shape[0] // k * k, : values.shape[1] // k * k], k)
    coarse = gaussian_filter(coarse, sigma_px / k, mode="nearest")

    def weights(n, m):  # linear interpolation from m coarse cells to n fine ones
        pos = np.clip((np.arange(n) + 0.5) / k - 0.5, 0, m - 1)
        lo = np.minimum(np.floor(pos).astype(int), max(m - 2, 0))
        w = np.zeros((n, m), np.float32)
        w[np.arange(n), lo] = 1 - (pos - lo)
        w[np.arange(n), np.minimum(lo + 1, m - 1)] += pos - lo
        return w

    return weights(values.shape[0], coarse.shape[0]) @ coarse @ weights(
        values.shape[1], coarse.shape[1]).T


def _field(p, rows, cols, spacing):
    """Mask of the collimated (exposed) field: each edge ``collimation_<edge>`` mm in."""
    r = np.arange(rows)[:, None] * spacing
    c = np.arange(cols)[None, :] * spacing
    return ((r >= p["collimation_top"]) & (r < rows * spacing - p["collimation_bottom"])
            & (c >= p["collimation_left"]) & (c < cols * spacing - p["collimation_right"]))


def _marker(grid, letter, view, side, p, shape_mm):
    """Mask of the lead letter's rays: 10 mm high, in the field's upper lateral corner."""
    rows_mm, cols_mm = shape_mm
    centre, mag = film_centre(p, view, side), p["magnification"]
    u = (grid.xs - centre[0]) * mag + cols_mm / 2  # film-plane mm from the film's left edge
    v = (grid.ys - centre[1]) * mag + rows_mm / 2
    left = (p["collimation_left"] + 8.0 if letter == "R"
            else cols_mm - p["collimation_right"] - 8.0 - 7.0)
    top = p["collimation_top"] + 8.0
    glyph = np.array([[c == "1" for c in row] for row in _MARKER[letter]])
    col = np.floor((u - left) / 1.43).astype(int)
    row = np.floor((v - top) / 1.43).astype(int)
    ok_c, ok_r = (col >= 0) & (col < 5), (row >= 0) & (row < 7)
    mask = np.zeros((len(v), len(u)), bool)
    mask[np.ix_(ok_r, ok_c)] = glyph[np.ix_(row[ok_r], col[ok_c])]
    return mask


def detector(p, view, side, image_size, rng, bones=None, aec=True):
    """What the detector of one film records: ``-ln`` of the exposure, and the mineral.

    Parameters
    ----------
    p : mapping
        Subject and film parameters (:mod:`bmdkit.phantoms.population`).
    view : {"hip", "pelvis"}
    side : {"right", "left"}
        The hip a hip film shows; on a pelvis film, ignored.
    image_size : int
        Long side of the film in pixels.
    rng : numpy.random.Generator
        Quantum noise.
    bones : list of Bone or None
        :func:`bmdkit.phantoms.anatomy.skeleton` of ``p`` if already built
        (``[]``: soft tissue alone).
    aec : bool, default=True
        Automatic exposure control; ``False``: a fixed exposure (``signal``
        is then the attenuation itself, plus scatter, blur and noise).

    Returns
    -------
    signal : ndarray of float32
        ``-ln`` of the exposure relative to the AEC's target: larger is
        more attenuation (bone).
    bone_path : ndarray of float32
        Mineral along each pixel's rays, g/cm².
    field : ndarray of bool
        The collimated (exposed) field.
    spacing : float
        mm per pixel.
    """
    rows, cols, spacing = film_shape(view, image_size)
    k = int(np.clip(np.ceil(spacing / MAX_RAY_SPACING_MM), 1, 4))
    grid = film_grid(p, view, side, image_size, oversample=k)
    bones = skeleton(p) if bones is None else bones
    mineral = np.zeros(grid.shape, np.float32)
    for values in project(bones, grid, p).values():
        mineral += values
    fat, lean = soft_tissue(p, grid)
    (mu_fat, rho_fat), (mu_lean, rho_lean), (mu_mineral, _) = (
        MU["fat"], MU["lean"], MU["mineral"])
    attenuation = (mu_fat * rho_fat * fat + mu_lean * rho_lean * lean) / 10 + mu_mineral * mineral
    letter = "R" if (view == "pelvis" or side == "right") else "L"
    attenuation += 4.0 * _marker(grid, letter, view, side, p, FILM_MM[view])
    # exposure: AEC on the central fifth of the film, heel effect along the rows
    # the chamber measures the dose behind it: the mean transmission, not the mean attenuation
    r0, c0 = grid.shape[0] * 2 // 5, grid.shape[1] * 2 // 5
    behind = attenuation[r0:grid.shape[0] - r0, c0:grid.shape[1] - c0]
    chamber = -np.log(np.exp(-behind.astype(np.float64)).mean()) if aec else 0.0
    heel = 1 + p["heel"] * np.linspace(-1, 1, grid.shape[0], dtype=np.float32)[:, None]
    primary = np.exp(chamber - attenuation) * heel * p["aec_error"]
    step = spacing / k
    if BLUR_MM / step > 0.3:
        primary = gaussian_filter(primary, BLUR_MM / step, truncate=3.0)
    depth_cm = p["body_depth"] / 10
    exposure = primary + SCATTER_PER_CM * depth_cm * _smooth(primary, SCATTER_SIGMA_MM / step)
    exposure = _block_mean(exposure, k)
    field = _field(p, rows, cols, spacing)
    exposure = np.where(field, exposure, COLLIMATED * exposure)
    quanta = QUANTA_PER_MM2 * spacing**2
    exposure = exposure + np.sqrt(exposure / quanta) * rng.standard_normal(
        exposure.shape, dtype=np.float32)
    signal = -np.log(np.maximum(exposure, 1e-6))
    return signal.astype(np.float32), _block_mean(mineral, k).astype(np.float32), field, spacing


def reader(signal, field, p, spacing):
    """The CR reader: the detector's signal as 16-bit grey levels, bone bright.

    Dynamic-range compression (part of a broad unsharp mask taken out), then
    exposure recognition: the field's histogram from its 2nd to its 98th
    percentile mapped to the output range (give or take the reader's own
    ``gain`` and ``offset``); outside the field, white. ``spacing``: mm per pixel.
    """
    inside = signal[field][::7]
    background = _smooth(np.where(field, signal, np.median(inside)), DRC_SIGMA_MM / spacing)
    signal = signal - p["drc"] * (background - background.mean())
    lo, hi = np.percentile(signal[field][::7], [2, 98])
    signal[~field] = 2 * hi - lo
    grey = p["offset"] + p["gain"] * _GREY_SPAN * (signal - lo) / max(hi - lo, 1e-6)
    return np.clip(grey, 0, 65535).astype(np.uint16)


def render(p, view, side, image_size, rng, bones=None):
    """Render one film of subject ``p``: :func:`detector` then :func:`reader`.

    Returns
    -------
    image : ndarray of uint16
    bone_path : ndarray of float32, g/cm²
    spacing : float, mm per pixel
    """
    signal, bone_path, field, spacing = detector(p, view, side, image_size, rng, bones)
    return reader(signal, field, p, spacing), bone_path, spacing


def simulate(p, view, side, image_size, rng):
    """Render a film and measure its DXA side: a :class:`Film`.

    ``side`` is the hip on a hip film, and the hip DXA measured on both views.
    """
    bones = skeleton(p)
    image, bone_path, spacing = render(p, view, side, image_size, rng, bones)
    truth = measure(p, bones, side)
    truth["neck_roi"] = [tuple(map(float, xy)) for xy in
                         to_pixels(truth["neck_roi_mm"], p, view, side, image_size)]
    return Film(image, bone_path, spacing, truth)
