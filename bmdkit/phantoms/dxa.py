"""The target as DXA measures it: areal BMD = bone mineral content / projected area in an ROI.

The mineral alone is projected through the film's geometry
(:func:`bmdkit.phantoms.anatomy.project`) on a fine grid of its own
(:data:`NECK_SPACING_MM`), so the value does not depend on the size a film is
saved at. The femoral-neck ROI is a box :data:`NECK_BOX_MM` long along the
projected neck axis, across the neck at its narrow free part (between the
head and the trochanters) and exactly as wide as the neck, so every ray in it
crosses bone: BMC / area is then the mean mineral per ray inside it. The
total-hip ROI is the femur (its mineral alone, as DXA's edge detection
separates it from the pelvis) lateral to the neck box's medial edge, down to
10 mm below the lesser trochanter; BMC / area over its bone rays.
"""

from __future__ import annotations

import numpy as np

from bmdkit.phantoms.anatomy import Grid, femur_frame, project

__all__ = ["NECK_BOX_MM", "measure", "neck_box", "roi_mask"]

NECK_BOX_MM = 15.0  # length of the femoral-neck box along the neck axis
NECK_SPACING_MM = 0.2
TOTAL_HIP_SPACING_MM = 0.5
_BONE_EDGE = 0.05  # g/cm²: a ray with less mineral is not bone (DXA's edge detection)


def neck_box(p, side):
    """Corners (4, 2) of the femoral-neck ROI in patient mm, and the unit neck axis (2,).

    The box's centre lies on the projected neck axis, 30 % of the way from the
    head's rim to the neck-shaft junction; it is :data:`NECK_BOX_MM` long and
    as wide as the neck (its diameter, as a cylinder projects).
    """
    head, to_head, junction, _ = femur_frame(p, side)
    axis = to_head[:2] / np.linalg.norm(to_head[:2])
    length = np.linalg.norm((head - junction)[:2])
    rim = p["head_radius"]
    centre = head[:2] - axis * (rim + 0.3 * (length - rim))
    across = np.array([-axis[1], axis[0]]) * p["neck_radius"]
    along = axis * NECK_BOX_MM / 2
    corners = np.array([centre + along + across, centre - along + across,
                        centre - along - across, centre + along - across])
    return corners, axis


def roi_mask(corners, xs, ys):
    """Boolean mask (len(ys), len(xs)) of the grid points inside the convex polygon ``corners``.

    ``corners`` are (x, y) pairs in order; ``xs``, ``ys`` the grid's
    coordinates in the same units (pixel centres: ``arange(n) + 0.5``).

    Examples
    --------
    >>> square = [(1, 1), (3, 1), (3, 3), (1, 3)]
    >>> roi_mask(square, np.arange(4) + 0.5, np.arange(4) + 0.5).astype(int)
    array([[0, 0, 0, 0],
           [0, 1, 1, 0],
           [0, 1, 1, 0],
           [0, 0, 0, 0]])
    """
    corners = np.asarray(corners, float)
    x, y = np.asarray(xs, float)[None, :], np.asarray(ys, float)[:, None]
    signs = []
    for (x0, y0), (x1, y1) in zip(corners, np.roll(corners, -1, axis=0)):
        signs.append((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0))
    signs = np.broadcast_arrays(*signs)
    return np.all([s >= 0 for s in signs], axis=0) | np.all([s <= 0 for s in signs], axis=0)


def _grid(bounds, spacing):
    xmin, xmax, ymin, ymax = bounds
    return Grid(np.arange(xmin, xmax, spacing) + spacing / 2,
                np.arange(ymin, ymax, spacing) + spacing / 2)


def measure(p, bones, side):
    """Femoral-neck and total-hip areal BMD (g/cm², noiseless) of ``side``.

    Parameters
    ----------
    p : mapping
        The subject and the film's positioning.
    bones : list of Bone
        :func:`bmdkit.phantoms.anatomy.skeleton` of ``p``.
    side : {"right", "left"}

    Returns
    -------
    dict
        ``femoral_neck_bmd``, ``total_hip_bmd`` (g/cm²), ``neck_area_cm2``,
        ``neck_roi_mm`` (the box's corners in patient mm).
    """
    corners, axis = neck_box(p, side)
    grid = _grid((*_span(corners[:, 0]), *_span(corners[:, 1])), NECK_SPACING_MM)
    inside = roi_mask(corners, grid.xs, grid.ys)
    mineral = sum(project(bones, grid, p).values())
    neck = float(mineral[inside].mean())

    head, _, junction, _ = femur_frame(p, side)
    medial_edge = corners[0]  # on the box's edge towards the head
    bottom = junction[1] + 62 * p["bone_scale"]
    reach = 75 * p["bone_scale"]
    grid = _grid((junction[0] - reach, junction[0] + reach, head[1] - 40, bottom),
                 TOTAL_HIP_SPACING_MM)
    femur = project([b for b in bones if b.name == f"femur_{side}"], grid, p)[f"femur_{side}"]
    x, y = grid.xs[None, :], grid.ys[:, None]
    lateral_of_box = (x - medial_edge[0]) * axis[0] + (y - medial_edge[1]) * axis[1] <= 0
    region = lateral_of_box & (femur > _BONE_EDGE)
    total_hip = float(femur[region].mean())
    return {"femoral_neck_bmd": neck, "total_hip_bmd": total_hip,
            "neck_area_cm2": float(inside.sum()) * NECK_SPACING_MM**2 / 100,
            "neck_roi_mm": corners}


def _span(values):
    return float(np.min(values)) - 1.0, float(np.max(values)) + 1.0
