"""Procedural AP hip radiograph phantoms, rendered in vectorised numpy.

A phantom is a projection of simple solids: the femoral shaft and neck are
hollow cylinders (cortex around trabecular bone or marrow), the head a
sphere, the trochanters ellipsoids; the pelvis contributes the acetabular
cup, the ilium and the ring of the obturator foramen; soft tissue is a thigh
of elliptical cross-section. Attenuation along each ray becomes a detector
signal ``1 - exp(-k A)`` with scatter, blur, quantum noise and an exposure
gain and offset, stored as 16-bit grey levels with bone bright.

Bone quality (a standard-normal latent per subject) thickens the cortex,
fills the trabecular network and densifies the pelvis; bone size, soft
tissue, positioning and exposure vary independently of it.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["render_hips"]

_K = 0.9  # attenuation -> signal: 1 - exp(-_K * A)
_BONE = 1.6  # bone attenuation relative to soft tissue
_ZOOM = 1.5  # image half-width / anatomy units
_CENTRE = (-0.03, 0.0)  # anatomy point at the image centre


def _chord(radius, dist):
    """Length of the chord at distance ``dist`` from the centre of a disc of ``radius``."""
    return 2.0 * np.sqrt(np.clip(radius**2 - dist**2, 0.0, None))


def _segment_distance(x, y, ax, ay, bx, by):
    """Distance from points to segments A-B, and the position along it (0 at A)."""
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / length2, 0.0, 1.0)
    return np.hypot(x - ax - t * dx, y - ay - t * dy), t * np.sqrt(length2)


def _tube(x, y, a, b, radius, cortex, fill, open_start=False):
    """Projected attenuation of a hollow capsule: cortex plus filled interior.

    ``open_start`` fades the tube in after ``a`` instead of closing it with a
    hemisphere, so it merges into the bone it grows from.
    """
    dist, along = _segment_distance(x, y, *a, *b)
    inner = radius - cortex
    tube = _chord(radius, dist) - _chord(inner, dist) + fill(along) * _chord(inner, dist)
    return tube * np.clip(along / 0.15, 0, 1) if open_start else tube


def _ellipsoid(x, y, cx, cy, rx, ry, depth):
    """Projected thickness of an ellipsoid with semi-axes rx, ry (in plane) and depth."""
    r2 = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
    return 2.0 * depth * np.sqrt(np.clip(1.0 - r2, 0.0, None))


def _trabecular_network(q, angle, theta, mag, s, rng):
    """Bone fraction (0-1) of the trabecular network, (n, s, s).

    Band-pass noise, oriented along and across the neck (compressive and
    tensile trabeculae), thresholded: better bone quality fills more of it.
    """
    n = len(q)
    fy = (np.fft.fftfreq(s)[:, None] * s / 2).astype(np.float32)
    fx = (np.fft.rfftfreq(s)[None, :] * s / 2).astype(np.float32)
    radius, orient = np.hypot(fx, fy), np.arctan2(fy, fx)
    spacing = _col(rng.uniform(0.025, 0.035, n)) * mag  # in image units
    along = _col(angle) + theta[:, :, :1] + np.pi / 2  # wave vector across the neck axis
    cos2 = np.cos(orient - along) ** 2
    weight = _pow8(cos2) + 0.6 * _pow8(1 - cos2)  # cos^16 + 0.6 sin^16: two narrow lobes
    spectrum = (np.exp(-0.5 * ((radius * spacing - 1) / 0.25) ** 2) * weight).astype(np.float32)
    noise = np.fft.rfft2(rng.standard_normal((n, s, s), dtype=np.float32))
    texture = np.fft.irfft2(noise * spectrum, s=(s, s)).astype(np.float32)
    texture /= texture.std(axis=(1, 2), keepdims=True) + 1e-12
    return 1 / (1 + np.exp(-(texture + 0.3 + 0.35 * q) / 0.5))


def _pow8(values):
    """``values ** 8`` by repeated squaring (numpy's power is slow for integer exponents)."""
    values = values * values
    values *= values
    return values * values


def _col(values):
    """Per-subject values broadcast against (n, S, S) grids."""
    return np.asarray(values, np.float32)[:, None, None]


def render_hips(quality, bone_scale, soft_tissue, image_size, rng):
    """Render AP hip phantoms as 16-bit images, bone bright.

    Parameters
    ----------
    quality : ndarray of shape (n,)
        Standard-normal bone-quality latent.
    bone_scale : ndarray of shape (n,)
        Relative bone size (about 1).
    soft_tissue : ndarray of shape (n,)
        Relative soft-tissue thickness (about 1; grows with BMI).
    image_size : int
    rng : numpy.random.Generator
        Draws positioning, anatomy, texture, exposure and noise.

    Returns
    -------
    ndarray of shape (n, image_size, image_size), uint16
    """
    n, s = len(quality), image_size
    q = _col(np.clip(quality, -3, 3))
    # positioning: rotation, magnification (with bone size), shift; femoral rotation
    theta = _col(np.deg2rad(rng.normal(0, 3, n)))
    mag = _col(_ZOOM * rng.uniform(0.93, 1.07, n) * bone_scale)
    shift = rng.uniform(-0.06, 0.06, (2, n))
    grid = (np.arange(s, dtype=np.float32) + 0.5) / s * 2 - 1
    u, v = grid[None, None, :], grid[None, :, None]
    uu, vv = u - _col(shift[0]), v - _col(shift[1])
    x = (np.cos(theta) * uu + np.sin(theta) * vv) / mag + _CENTRE[0]
    y = (-np.sin(theta) * uu + np.cos(theta) * vv) / mag + _CENTRE[1]

    # femur: shaft axis through the neck-shaft junction n0, neck at the neck-shaft angle
    n0 = (np.float32(-0.22), np.float32(0.1))
    shaft_dir = (np.array([0.1, 1.0]) / np.hypot(0.1, 1.0)).astype(np.float32)
    angle = np.arctan2(shaft_dir[1], shaft_dir[0]) - np.deg2rad(rng.normal(128, 4, n))
    neck_len = 0.5 * np.cos(np.deg2rad(rng.normal(0, 10, n)))  # femoral rotation foreshortens
    head = (_col(n0[0] + neck_len * np.cos(angle)), _col(n0[1] + neck_len * np.sin(angle)))
    r_shaft, r_neck, r_head = 0.15, 0.14, 0.23
    trabecular = 0.55 * _trabecular_network(q, angle, theta, mag, s, rng)

    def marrow(along):  # trabecular bone near the junction, marrow further down
        return trabecular * np.exp(-along / 0.25)

    def neck_fill(along):
        return trabecular

    head_dist = np.hypot(x - head[0], y - head[1])
    parts = [
        _tube(x, y, n0, (n0[0] + 3 * shaft_dir[0], n0[1] + 3 * shaft_dir[1]), r_shaft,
              r_shaft * np.clip(0.32 + 0.08 * q, 0.08, 0.65), marrow, open_start=True),
        _tube(x, y, n0, head, r_neck, r_neck * np.clip(0.16 + 0.05 * q, 0.04, 0.45), neck_fill),
        _chord(r_head, head_dist) * trabecular
        + _chord(r_head, head_dist) - _chord(r_head - 0.02, head_dist),
        _ellipsoid(x, y, n0[0] - 0.02, n0[1] + 0.02, 0.21, 0.24, 0.15) * (0.2 + trabecular),
        _ellipsoid(x, y, n0[0] - 0.13, n0[1] - 0.16, 0.13, 0.18, 0.12) * (0.3 + trabecular),
        _ellipsoid(x, y, n0[0] + 0.18, n0[1] + 0.25, 0.07, 0.08, 0.06) * (0.4 + trabecular),
    ]
    femur = np.maximum.reduce(parts)

    # pelvis: acetabular roof arching over the head, ilium above, obturator ring below
    dx, dy = x - head[0], y - head[1]
    rho, phi = np.hypot(dx, dy), np.arctan2(dy, dx)
    off_centre = (phi + np.deg2rad(60) + np.pi) % (2 * np.pi) - np.pi  # roof centred up-medial
    roof = 2.0 * _chord(0.045, rho - r_head - 0.07) * np.clip(np.cos(off_centre * 0.85), 0, None)
    ilium = _ellipsoid(x, y, head[0] + 0.3, head[1] - 1.0, 0.75, 0.85, 0.1)
    ring = (_ellipsoid(x, y, head[0] + 0.42, head[1] + 0.62, 0.36, 0.3, 0.09)
            - _ellipsoid(x, y, head[0] + 0.42, head[1] + 0.62, 0.22, 0.17, 0.09))
    pelvis = (roof + ilium + np.clip(ring, 0, None)) * (1 + 0.1 * q)

    # soft tissue: a thigh of elliptical cross-section, wider and thicker with BMI
    fat = _col(soft_tissue)
    width = 1.3 + 0.5 * (fat - 1)
    tissue = 0.45 * fat * np.sqrt(np.clip(1 - ((u - 0.45 - 0.1 * v) / width) ** 2, 0, None))

    signal = 1 - np.exp(-_K * (_BONE * (femur + pelvis) + tissue))
    scatter = _col(0.15 + 0.1 * np.clip(soft_tissue - 1, -1, 1))
    signal = (1 - scatter) * signal + scatter * signal.mean(axis=(1, 2), keepdims=True)
    signal = gaussian_filter(signal, sigma=(0, 0.6 * s / 256, 0.6 * s / 256))
    noise = _col(0.012 * rng.uniform(0.8, 1.3, n) * soft_tissue)
    signal += noise * rng.standard_normal(signal.shape, dtype=np.float32)
    heel = 1 + _col(rng.uniform(-0.05, 0.05, n)) * v  # anode heel effect
    grey = _col(rng.uniform(1000, 6000, n)) + _col(rng.uniform(30000, 55000, n)) * heel * signal
    return np.clip(grey, 0, 65535).astype(np.uint16)
