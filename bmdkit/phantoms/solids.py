"""Solids and their analytic path lengths along parallel AP rays.

Every solid is in patient millimetres: ``x`` to the right of the film (the
patient's left), ``y`` down, ``z`` along the beam. A ray at ``(x, y)`` runs
along ``z``; :meth:`chord` returns the length of it inside the solid, in mm,
exactly (a quadratic in ``z`` for each shape), so a projection costs a few
array operations per solid over the pixels of its bounding box.

A :class:`Bone` is a shape with a cortical shell and a trabecular interior:
the interior is the same shape scaled about its centre, so that the shell
holds the volume fraction that makes the solid's integral volumetric density
what was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Bone", "Cylinder", "Ellipsoid", "Ring", "SphericalShell", "rotation"]


def rotation(about_y=0.0, about_z=0.0):
    """3x3 rotation: first ``about_y`` radians about the vertical axis, then ``about_z`` in plane."""
    cy, sy, cz, sz = np.cos(about_y), np.sin(about_y), np.cos(about_z), np.sin(about_z)
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry


def _sqrt_pos(values):
    return np.sqrt(np.maximum(values, 0.0))


@dataclass
class Ellipsoid:
    """An ellipsoid: ``centre`` (3,), semi-axes ``axes`` (3,), orientation ``rot`` (3x3).

    Examples
    --------
    >>> ball = Ellipsoid((0.0, 0.0, 0.0), (10.0, 10.0, 10.0))
    >>> float(ball.chord(np.array([[0.0, 6.0]]), np.array([[8.0]]))[0, 0])  # 2 sqrt(100-64)
    12.0
    """

    centre: tuple
    axes: tuple
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))
    dims = 3  # a shell scaled in three dimensions (see Bone)

    def __post_init__(self):
        self.centre = np.asarray(self.centre, float)
        self.axes = np.asarray(self.axes, float)
        self.rot = np.asarray(self.rot, float)

    def moved(self, pivot, rot):
        """The ellipsoid rotated by ``rot`` about the point ``pivot``."""
        pivot = np.asarray(pivot, float)
        return Ellipsoid(pivot + rot @ (self.centre - pivot), self.axes, rot @ self.rot)

    def scaled(self, k):
        return Ellipsoid(self.centre, self.axes * k, self.rot)

    def bounds(self):
        m = self.rot @ np.diag(self.axes**2) @ self.rot.T
        hx, hy = np.sqrt(m[0, 0]), np.sqrt(m[1, 1])
        return self.centre[0] - hx, self.centre[0] + hx, self.centre[1] - hy, self.centre[1] + hy

    def chord(self, x, y):
        q = self.rot @ np.diag(self.axes**-2.0) @ self.rot.T
        dx, dy = x - self.centre[0], y - self.centre[1]
        b = q[0, 2] * dx + q[1, 2] * dy
        c = q[0, 0] * dx * dx + 2 * q[0, 1] * dx * dy + q[1, 1] * dy * dy - 1.0
        return 2.0 * _sqrt_pos(b * b - q[2, 2] * c) / q[2, 2]


@dataclass
class Cylinder:
    """A circular cylinder from ``start`` along the unit vector ``axis`` for ``length``, flat ends.

    Examples
    --------
    >>> rod = Cylinder((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), 50.0, 5.0)  # along x, in the film plane
    >>> float(rod.chord(np.array([[20.0]]), np.array([[3.0]]))[0, 0])  # 2 sqrt(25 - 9)
    8.0
    """

    start: tuple
    axis: tuple
    length: float
    radius: float
    dims = 2  # the ends are open: a shell scaled across the axis

    def __post_init__(self):
        self.start = np.asarray(self.start, float)
        self.axis = np.asarray(self.axis, float) / np.linalg.norm(self.axis)

    def moved(self, pivot, rot):
        pivot = np.asarray(pivot, float)
        return Cylinder(pivot + rot @ (self.start - pivot), rot @ self.axis, self.length,
                        self.radius)

    def scaled(self, k):
        return Cylinder(self.start, self.axis, self.length, self.radius * k)

    def bounds(self):
        end = self.start + self.length * self.axis
        r = self.radius
        return (min(self.start[0], end[0]) - r, max(self.start[0], end[0]) + r,
                min(self.start[1], end[1]) - r, max(self.start[1], end[1]) + r)

    def chord(self, x, y):
        ux, uy, uz = self.axis
        dx, dy = x - self.start[0], y - self.start[1]
        k = dx * ux + dy * uy  # axial coordinate of the ray's point at z = start's z
        a = max(1.0 - uz * uz, 1e-12)
        half = _sqrt_pos(uz * uz * k * k - a * (dx * dx + dy * dy - k * k - self.radius**2)) / a
        mid = uz * k / a
        lo, hi = mid - half, mid + half  # the ray's z inside the infinite cylinder
        if abs(uz) > 1e-9:  # and between the two end planes
            t1, t2 = -k / uz, (self.length - k) / uz
            lo, hi = np.maximum(lo, np.minimum(t1, t2)), np.minimum(hi, np.maximum(t1, t2))
            return np.maximum(hi - lo, 0.0) * (half > 0)
        return (hi - lo) * ((k >= 0) & (k <= self.length))


@dataclass
class Ring:
    """A tube of radius ``tube`` around an ellipse (semi-axes ``rx``, ``ry``) in the film plane.

    The pubic and ischial rami around the obturator foramen. The distance to
    the centre line is measured along the ray from the ellipse's centre, a
    close approximation for a ring whose tube is thin against its radii.
    """

    centre: tuple
    rx: float
    ry: float
    tube: float
    dims = 2

    def __post_init__(self):
        self.centre = np.asarray(self.centre, float)

    def scaled(self, k):
        return Ring(self.centre, self.rx, self.ry, self.tube * k)

    def bounds(self):
        cx, cy, t = self.centre[0], self.centre[1], self.tube
        return cx - self.rx - t, cx + self.rx + t, cy - self.ry - t, cy + self.ry + t

    def chord(self, x, y):
        dx, dy = x - self.centre[0], y - self.centre[1]
        rho = np.hypot(dx, dy)
        norm = np.hypot(dx / self.rx, dy / self.ry)
        dist = rho * (1.0 - 1.0 / np.maximum(norm, 1e-9))
        return 2.0 * _sqrt_pos(self.tube**2 - dist * dist)


@dataclass
class SphericalShell:
    """The part of a spherical shell (radii ``inner`` < ``outer``) facing ``direction``.

    The acetabulum: a cup over the femoral head whose cover fades over
    ``half_angle`` radians of in-plane direction from the unit 2-vector ``direction``.
    """

    centre: tuple
    inner: float
    outer: float
    direction: tuple
    half_angle: float
    dims = 1  # scaled through its thickness

    def __post_init__(self):
        self.centre = np.asarray(self.centre, float)

    def scaled(self, k):
        middle, half = (self.outer + self.inner) / 2, (self.outer - self.inner) / 2
        return SphericalShell(self.centre, middle - k * half, middle + k * half, self.direction,
                              self.half_angle)

    def bounds(self):
        cx, cy, r = self.centre[0], self.centre[1], self.outer
        return cx - r, cx + r, cy - r, cy + r

    def chord(self, x, y):
        dx, dy = x - self.centre[0], y - self.centre[1]
        d2 = dx * dx + dy * dy
        shell = 2.0 * (_sqrt_pos(self.outer**2 - d2) - _sqrt_pos(self.inner**2 - d2))
        cosine = (dx * self.direction[0] + dy * self.direction[1]) / np.sqrt(np.maximum(d2, 1e-9))
        cover = np.clip((cosine - np.cos(self.half_angle)) / (1 - np.cos(self.half_angle)), 0, 1)
        return shell * np.sqrt(cover)


@dataclass
class Bone:
    """A solid of bone: ``shape`` with a cortical shell and a trabecular interior.

    Parameters
    ----------
    shape : Ellipsoid, Cylinder, Ring or SphericalShell
    density : float
        Integral volumetric mineral density of the whole solid, mg/cm³
        hydroxyapatite.
    trabecular : float
        Volumetric mineral density of the interior, mg/cm³ (< ``density``).
    cortical : float
        Volumetric mineral density of the cortex, mg/cm³ (> ``density``).
    name : str
        Which bone it belongs to (parts of one bone are joined, see
        :func:`bmdkit.phantoms.anatomy.project`), e.g. ``"femur_right"``.
    region : str
        Its region (``"neck"``, ``"trochanter"``...), for the texture.

    The interior is the shape scaled by ``(1 - cortical fraction) ** (1 / d)``,
    ``d`` the number of dimensions its ``scaled`` scales (``shape.dims``: 3
    for an ellipsoid, 2 for a cylinder or ring, 1 for a spherical shell), so
    the cortex holds the volume fraction that gives ``density``.

    Examples
    --------
    A uniform ball of radius 10 mm at 300 mg/cm³: 2 cm of it on the central ray.

    >>> ball = Bone(Ellipsoid((0, 0, 0), (10, 10, 10)), density=300.0, trabecular=300.0,
    ...             cortical=300.0, name="test")
    >>> round(float(ball.mineral(np.array([[0.0]]), np.array([[0.0]]))[0, 0]), 6)  # g/cm²
    0.6
    """

    shape: object
    density: float
    trabecular: float
    cortical: float
    name: str
    region: str = ""

    @property
    def inner_scale(self):
        """Scale of the interior that gives the solid its integral density."""
        if self.cortical <= self.trabecular:  # a uniform solid
            return 1.0
        fraction = (self.density - self.trabecular) / (self.cortical - self.trabecular)
        return float(np.clip(1.0 - fraction, 0.0, 1.0)) ** (1.0 / self.shape.dims)

    def chords(self, x, y):
        """Path lengths (mm) through the whole solid and through its interior."""
        outer = self.shape.chord(x, y)
        inner = self.shape.scaled(self.inner_scale).chord(x, y)
        return outer, inner

    def mineral(self, x, y, texture=None):
        """Mineral along each ray in g/cm²; ``texture`` multiplies the trabecular part."""
        outer, inner = self.chords(x, y)
        trabecular = self.trabecular * inner
        if texture is not None:
            trabecular = trabecular * texture
        return (self.cortical * (outer - inner) + trabecular) * 1e-4  # mg/cm³ * mm -> g/cm²
