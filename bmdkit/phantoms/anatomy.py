"""The skeleton and soft tissue of one subject, and their projection along AP rays.

Patient coordinates in mm (see :mod:`bmdkit.phantoms.solids`): the origin on
the midline at the height of the two hip-joint centres, ``x`` to the film's
right (the patient's left: the right hip is at negative ``x``, as AP films
are read), ``y`` down, ``z`` along the beam. Each hip has a proximal femur
(head, neck, greater and lesser trochanter, intertrochanteric mass, shaft)
and a hemipelvis (acetabulum, ilium, obturator ring of pubic and ischial
rami, ischial tuberosity, pubic body); on the midline the sacrum, the L5
and L4 vertebral bodies and the pelvic brim. The femur is placed at the film's femoral rotation
(about the vertical through the head centre) and abduction (in plane).
"""

from __future__ import annotations

import numpy as np

from bmdkit.phantoms.solids import Bone, Cylinder, Ellipsoid, Ring, SphericalShell, rotation

__all__ = ["SIDES", "Grid", "femur_frame", "project", "skeleton", "soft_tissue"]

SIDES = ("right", "left")
#: Regions of each hip with their own volumetric density (mg/cm³ HA); the spine is the midline one.
REGIONS = ("neck", "head", "trochanter", "intertrochanter", "shaft", "pelvis")
_SHAFT_TILT = np.deg2rad(8.0)  # femoral shaft axis from vertical (knees medial)
_TEXTURE_REGIONS = ("neck", "head", "trochanter", "intertrochanter")


class Grid:
    """Ray positions on a regular grid: columns at ``xs`` (mm), rows at ``ys`` (mm), increasing."""

    def __init__(self, xs, ys):
        self.xs, self.ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        self.shape = (len(self.ys), len(self.xs))

    def window(self, bounds):
        """(row slice, column slice) of the rays inside ``bounds`` (xmin, xmax, ymin, ymax), or None."""
        xmin, xmax, ymin, ymax = bounds
        c0, c1 = np.searchsorted(self.xs, [xmin, xmax])
        r0, r1 = np.searchsorted(self.ys, [ymin, ymax])
        if c1 <= c0 or r1 <= r0:
            return None
        return slice(r0, r1), slice(c0, c1)


def _lateral(side):
    """-1 for the right hip (lateral is towards negative x), +1 for the left."""
    return -1.0 if side == "right" else 1.0


def femur_frame(p, side):
    """Head centre, unit neck axis (towards the head) and neck-shaft junction, in 3D, placed.

    The femur turns about the vertical through the head centre by the film's
    femoral rotation (``rotation_<side>``, degrees; positive turns the neck
    out of the film plane) and then in plane by the abduction.
    """
    lat = _lateral(side)
    head = np.array([lat * p["hip_separation"] / 2, 0.0, 0.0])
    shaft = np.array([-lat * np.sin(_SHAFT_TILT), np.cos(_SHAFT_TILT), 0.0])
    nsa = np.deg2rad(p["neck_shaft_angle"])
    c, s = np.cos(lat * nsa), np.sin(lat * nsa)
    to_head = np.array([c * shaft[0] - s * shaft[1], s * shaft[0] + c * shaft[1], 0.0])
    placed = rotation(np.deg2rad(p[f"rotation_{side}"]), lat * np.deg2rad(p[f"abduction_{side}"]))
    to_head = placed @ to_head
    return head, to_head, head - p["neck_length"] * to_head, placed @ shaft


def _density(p, side, region):
    """(integral, trabecular, cortical) mg/cm³ of a region."""
    key = f"{region}_{side}" if region != "spine" else "spine"
    return p[f"vbmd_{key}"], p[f"trabecular_{key}"], p["cortical_density"]


def _hip(p, side):
    """The bones of one hip."""
    lat, k = _lateral(side), p["bone_scale"]
    head, to_head, junction, shaft = femur_frame(p, side)
    placed = rotation(np.deg2rad(p[f"rotation_{side}"]), lat * np.deg2rad(p[f"abduction_{side}"]))
    femur, pelvis = f"femur_{side}", f"pelvis_{side}"

    def femoral(region, shape):
        return Bone(shape, *_density(p, side, region), name=femur, region=region)

    def local(offset):  # a point given relative to the junction in the unrotated femur
        return head + placed @ (junction_flat + np.asarray(offset) * k - head)

    # the unrotated junction, for placing the trochanters around it
    flat = {**p, f"rotation_{side}": 0.0, f"abduction_{side}": 0.0}
    junction_flat = femur_frame(flat, side)[2]
    r_neck, r_shaft = p["neck_radius"], p["shaft_radius"]
    bones = [
        femoral("head", Ellipsoid(head, (p["head_radius"],) * 3)),
        femoral("neck", Cylinder(junction, to_head, p["neck_length"], r_neck)),
        femoral("trochanter", Ellipsoid(local((lat * 11, -12, 4)), np.array([16, 24, 16]) * k,
                                        placed @ rotation(0, lat * 0.25))),
        femoral("trochanter", Ellipsoid(local((-lat * 15, 40, -6)), np.array([8, 11, 8]) * k,
                                        placed)),
        femoral("intertrochanter", Ellipsoid(local((lat * 4, 22, 0)), np.array([18, 30, 16]) * k,
                                             placed @ rotation(0, -lat * 0.15))),
        femoral("shaft", Cylinder(local((0, 15, 0)), shaft, 300.0, r_shaft)),
    ]
    # hemipelvis: fixed to the pelvis, tilted (sagittal tilt foreshortens it vertically)
    tilt = 1.0 + np.sin(np.deg2rad(p["pelvic_tilt"]))
    r_head = p["head_radius"]
    half = p["hip_separation"] / 2

    def pelvic(shape, region="pelvis"):
        return Bone(shape, *_density(p, side, region), name=pelvis, region=region)

    def at(dx, dy, dz=0.0):  # dx towards the midline
        return head + np.array([-lat * dx * k, dy * k * tilt, dz * k])

    bones += [
        pelvic(SphericalShell(head, r_head + 1.5, r_head + 11 * k,
                              (-lat * np.sin(0.6), -np.cos(0.6)), np.deg2rad(95))),
        # the iliac wing faces forwards and outwards: turned 35 degrees about the vertical
        pelvic(Ellipsoid(at(8, -70), np.array([60, 62, 8]) * k,
                         rotation(lat * np.deg2rad(35), lat * 0.3))),
        pelvic(Ring(at(40, 50), 25 * k, 19 * k * tilt, 7.5 * k)),
        pelvic(Ellipsoid(at(22, 74, 5), np.array([13, 16, 13]) * k)),
        pelvic(Ellipsoid(head + np.array([-lat * (half - 9), 50 * k * tilt, 0]),
                         np.array([10, 17, 11]) * k)),
    ]
    return bones


def skeleton(p):
    """Every bone of a subject's hips and lower spine, placed for one film.

    Parameters
    ----------
    p : mapping
        One row of :func:`bmdkit.phantoms.population.draw_population` joined
        with the film's positioning (:func:`~bmdkit.phantoms.population.draw_positioning`).

    Returns
    -------
    list of Bone
    """
    k = p["bone_scale"]

    def spine(centre, axes):
        return Bone(Ellipsoid(centre, np.asarray(axes) * k), *_density(p, None, "spine"),
                    name="spine", region="spine")

    tilt = 1.0 + np.sin(np.deg2rad(p["pelvic_tilt"]))
    brim = np.mean([_density(p, side, "pelvis") for side in SIDES], axis=0)
    bones = [spine((0.0, -62 * k, 12 * k), (44, 52, 20)),
             spine((0.0, -128 * k, 8 * k), (25, 13, 17)),
             spine((0.0, -160 * k, 8 * k), (24, 13, 16)),
             # the pelvic brim (arcuate and pectineal lines): a ring round the pelvic inlet
             Bone(Ring((0.0, -8 * k * tilt, 0.0), 60 * k, 48 * k * tilt, 4.5 * k),
                  1.4 * brim[0], brim[1], brim[2], name="pelvic_brim", region="pelvis")]
    for side in SIDES:
        bones += _hip(p, side)
    return bones


def _texture(p, bone, x, y):
    """Trabecular pattern: 1 + a zero-mean sum of plane waves (period 1–2 mm) along and across."""
    rng = np.random.default_rng(int(p["texture_seed"]))
    n = 8
    period = rng.uniform(1.0, 2.0, n)
    along = np.deg2rad(-_lateral(bone.name.split("_")[1]) * 20.0)  # principal compressive group
    angle = along + np.where(np.arange(n) % 3 == 2, np.pi / 2, 0.0) + rng.normal(0, 0.25, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    k = 2 * np.pi / period
    waves = 0.0
    for i in range(n):  # cos(a x + b y + c) = cos(a x) cos(b y + c) - sin(a x) sin(b y + c)
        ax, by = k[i] * np.cos(angle[i]) * x, k[i] * np.sin(angle[i]) * y + phase[i]
        waves = waves + np.cos(ax) * np.cos(by) - np.sin(ax) * np.sin(by)
    return 1.0 + p["texture_amplitude"] * np.sqrt(2.0 / n) * waves


def project(bones, grid, p=None):
    """Mineral along each ray of ``grid``, per bone, in g/cm².

    The parts of one bone (same ``name``) are joined by the largest mineral
    path of its parts at each ray (they overlap where they meet); bones add.

    Parameters
    ----------
    bones : list of Bone
    grid : Grid
    p : mapping or None
        The subject (for its trabecular texture); ``None``: no texture.

    Returns
    -------
    dict
        Bone name -> float32 array of ``grid.shape``.
    """
    maps = {}
    for bone in bones:
        window = grid.window(bone.shape.bounds())
        if window is None:
            continue
        rows, cols = window
        x, y = grid.xs[None, cols], grid.ys[rows, None]
        texture = (_texture(p, bone, x, y) if p is not None and bone.region in _TEXTURE_REGIONS
                   else None)
        mineral = bone.mineral(x, y, texture).astype(np.float32)
        if bone.name not in maps:
            maps[bone.name] = np.zeros(grid.shape, np.float32)
        target = maps[bone.name]
        np.maximum(target[rows, cols], mineral, out=target[rows, cols])
    return maps


def _ellipse_chord(x, half_width, half_depth):
    return 2.0 * half_depth * np.sqrt(np.clip(1.0 - (x / half_width) ** 2, 0.0, None))


def soft_tissue(p, grid):
    """(fat, lean) path lengths in mm on ``grid``: trunk above the crotch, two thighs below.

    Each is an elliptic cylinder (vertical axis) with a lean core inside a
    layer of fat ``fat_thickness`` mm thick.
    """
    x = grid.xs
    f = p["fat_thickness"]

    def layered(centre_x, width, depth):
        outer = _ellipse_chord(x - centre_x, width / 2, depth / 2)
        inner = _ellipse_chord(x - centre_x, max(width / 2 - f, 1.0), max(depth / 2 - f, 1.0))
        return outer - inner, inner

    trunk = layered(0.0, p["body_width"], p["body_depth"])
    half = p["hip_separation"] / 2 + 15 * p["bone_scale"]
    thighs = [layered(c, p["thigh_width"], p["thigh_depth"]) for c in (-half, half)]
    thigh = (thighs[0][0] + thighs[1][0], thighs[0][1] + thighs[1][1])
    crotch = 95.0 * p["bone_scale"]
    below = np.clip((grid.ys - crotch) / 30.0 + 0.5, 0.0, 1.0)[:, None]
    fat = (1 - below) * trunk[0][None, :] + below * thigh[0][None, :]
    lean = (1 - below) * trunk[1][None, :] + below * thigh[1][None, :]
    return fat.astype(np.float32), lean.astype(np.float32)
