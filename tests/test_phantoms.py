"""The physics of the SYNTHETIC phantoms (bmdkit.phantoms) and the cohort files made of them."""

import numpy as np
import pytest
from PIL import Image

from bmdkit.datasets import make_synthetic_cohort
from bmdkit.phantoms import (
    draw_metadata,
    draw_population,
    draw_positioning,
    roi_mask,
    simulate,
)
from bmdkit.phantoms.anatomy import Grid, project, skeleton
from bmdkit.phantoms.render import detector, film_grid
from bmdkit.phantoms.solids import Bone, Cylinder, Ellipsoid, rotation


def _subject(seed=0, i=0):
    rng = np.random.default_rng(seed)
    meta = draw_metadata(i + 1, rng)
    population = draw_population(meta, rng)
    positioning = draw_positioning(i + 1, rng)
    return {**population.iloc[i].to_dict(), **positioning.iloc[i].to_dict()}


@pytest.mark.parametrize("shape, volume_mm3", [
    (Ellipsoid((3.0, -2.0, 1.0), (12.0, 20.0, 8.0), rotation(0.4, 0.7)), 4 / 3 * np.pi * 12 * 20 * 8),
    (Cylinder((-20.0, 5.0, 0.0), (1.0, 0.3, 0.4), 50.0, 9.0), np.pi * 81 * 50),
])
def test_a_solid_projects_to_its_analytic_areal_density(shape, volume_mm3):
    """Uniform: the central chord times the density; with a shell: the mineral is conserved."""
    uniform = Bone(shape, 500.0, 500.0, 500.0, name="test")
    x0, y0 = shape.centre[:2] if isinstance(shape, Ellipsoid) else (shape.start + 25.0 * shape.axis)[:2]
    chord = shape.chord(np.array([[x0]]), np.array([[y0]]))[0, 0]
    assert uniform.mineral(np.array([[x0]]), np.array([[y0]]))[0, 0] == pytest.approx(
        0.5 * chord / 10)  # g/cm³ x cm
    if isinstance(shape, Ellipsoid):  # along z through the centre: twice the semi-axis in z
        q = shape.rot @ np.diag(shape.axes**-2.0) @ shape.rot.T
        assert chord == pytest.approx(2 / np.sqrt(q[2, 2]))

    shelled = Bone(shape, 300.0, 120.0, 1050.0, name="test")
    xmin, xmax, ymin, ymax = shape.bounds()
    step = 0.1
    grid = Grid(np.arange(xmin - 1, xmax + 1, step), np.arange(ymin - 1, ymax + 1, step))
    mineral = project([shelled], grid)["test"]  # g/cm² per ray
    mass_g = mineral.sum() * (step / 10) ** 2
    assert mass_g == pytest.approx(0.300 * volume_mm3 / 1000, rel=0.005)


def _neck_roi_mean(truth, row):
    bone_path = np.asarray(Image.open(truth["bone_path"][row]), np.float64)
    rows, cols = bone_path.shape
    inside = roi_mask(truth["neck_roi"][row], np.arange(cols) + 0.5, np.arange(rows) + 0.5)
    return bone_path[inside].mean(), inside.mean()


@pytest.mark.parametrize("view", ["hip", "pelvis"])
def test_bone_path_inside_the_neck_roi_is_the_femoral_neck_bmd(tmp_path, view):
    X, y, truth = make_synthetic_cohort(n=3, image_size=1024, random_state=4, out_dir=tmp_path,
                                        view=view, return_truth=True)
    assert list(truth.index) == list(X.index)
    for row in range(3):
        mean, fraction = _neck_roi_mean(truth, row)
        assert mean == pytest.approx(truth["femoral_neck_bmd"][row], rel=0.01)
        assert fraction < (0.03 if view == "pelvis" else 0.05)
        assert Image.open(truth["bone_path"][row]).mode == "F"
        if view == "pelvis":  # the patient's right hip on the film's left half
            x = np.mean([corner[0] for corner in truth["neck_roi"][row]])
            assert (x < 1024 / 2) == (X["dxa_side"][row] == "right")
    # y is the truth plus DXA's precision error (CV 1.5 %)
    assert np.abs(y / truth["femoral_neck_bmd"] - 1).max() < 0.06
    assert (truth["total_hip_bmd"] > 0.4).all() and (truth["soft_tissue_cm"] > 10).all()


def _bone_contrast(p, **changes):
    """Neck ROI signal with bone minus without, at a fixed exposure (no AEC), noise-free grid."""
    p = {**p, **changes}
    view, side, size = "hip", "right", 256
    rng = np.random.default_rng(0)
    with_bone, *_ = detector(p, view, side, size, rng, aec=False)
    without, *_ = detector(p, view, side, size, np.random.default_rng(0), bones=[], aec=False)
    from bmdkit.phantoms.dxa import neck_box
    from bmdkit.phantoms.render import to_pixels
    corners = to_pixels(neck_box(p, side)[0], p, view, side, size)
    rows, cols = with_bone.shape
    inside = roi_mask(corners, np.arange(cols) + 0.5, np.arange(rows) + 0.5)
    return float((with_bone - without)[inside].mean())


def test_more_mineral_gives_brighter_bone_and_more_soft_tissue_less_contrast():
    p = _subject()
    denser = {key: value * 1.2 for key, value in p.items()
              if key.startswith(("vbmd_", "trabecular_"))}
    base = _bone_contrast(p)
    assert base > 0.2  # -ln units: the neck attenuates
    assert _bone_contrast(p, **denser) > base * 1.1
    thicker = {"body_depth": p["body_depth"] * 1.4, "fat_thickness": p["fat_thickness"] * 1.4}
    assert _bone_contrast(p, **thicker) < base * 0.95  # more scatter


def test_the_same_seed_gives_the_same_files(tmp_path):
    for image_format in ("png", "dicom"):
        first = make_synthetic_cohort(n=3, image_size=48, random_state=7, out_dir=tmp_path / "a",
                                      view="pelvis", image_format=image_format, return_truth=True)
        again = make_synthetic_cohort(n=3, image_size=48, random_state=7, out_dir=tmp_path / "b",
                                      view="pelvis", image_format=image_format, return_truth=True)
        for a, b in zip([*first[0]["image_path"], *first[2]["bone_path"]],
                        [*again[0]["image_path"], *again[2]["bone_path"]]):
            assert open(a, "rb").read() == open(b, "rb").read()
        np.testing.assert_array_equal(first[1], again[1])


def test_y_and_the_subjects_do_not_depend_on_image_size_view_or_format(tmp_path):
    X1, y1 = make_synthetic_cohort(n=4, image_size=32, random_state=2, out_dir=tmp_path / "a")
    X2, y2 = make_synthetic_cohort(n=4, image_size=64, random_state=2, out_dir=tmp_path / "b",
                                   view="pelvis", image_format="dicom")
    np.testing.assert_array_equal(y1, y2)
    assert X1.drop(columns="image_path").equals(X2.drop(columns=["image_path", "dxa_side"]))


def test_dicom_headers_match_the_metadata(tmp_path):
    import pydicom

    from bmdkit.io import read_dicom_metadata

    X, _, truth = make_synthetic_cohort(n=4, image_size=40, random_state=1, out_dir=tmp_path,
                                        image_format="dicom", return_truth=True)
    headers = read_dicom_metadata(X["image_path"])
    np.testing.assert_array_equal(headers["age_at_xray"], np.floor(X["age_at_xray"]))
    assert headers["sex"].tolist() == X["sex"].tolist()
    np.testing.assert_allclose(headers["height_cm"], X["height_cm"], atol=0.05)
    np.testing.assert_allclose(headers["weight_kg"], X["weight_kg"], atol=0.05)
    uids = set()
    for path, side, spacing in zip(X["image_path"], truth["side"], truth["pixel_spacing_mm"]):
        ds = pydicom.dcmread(path)
        assert ds.Modality == "CR" and ds.ViewPosition == "AP" and ds.BodyPartExamined == "HIP"
        assert ds.Laterality == side[0].upper()
        assert float(ds.PixelSpacing[0]) == pytest.approx(spacing, rel=1e-5)
        assert ds.pixel_array.dtype == np.uint16 and max(ds.Rows, ds.Columns) == 40
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == 4


@pytest.mark.parametrize("view", ["hip", "pelvis"])
def test_the_cohort_dicoms_are_valid_cr_images(tmp_path, view):
    """dciodvfy (dicom3tools) finds no error in a cohort film: every type 1 and 2 attribute of
    the CR Image IOD is there, and none that a condition forbids."""
    pytest.importorskip("pydicom")
    from dicom_cohort import dciodvfy_errors

    X, _ = make_synthetic_cohort(n=1, image_size=32, out_dir=tmp_path, view=view,
                                 image_format="dicom")
    assert dciodvfy_errors(X["image_path"][0]) == []


def test_the_film_has_the_physical_pixel_spacing_and_orientation(tmp_path):
    X, _, truth = make_synthetic_cohort(n=2, image_size=1024, random_state=0, out_dir=tmp_path,
                                        view="pelvis", return_truth=True)
    image = np.asarray(Image.open(X["image_path"][0]))
    assert image.shape == (833, 1024) and image.dtype == np.uint16
    assert truth["pixel_spacing_mm"][0] == pytest.approx(430 / 1024)
    p = _subject(0)
    grid = film_grid({**p, "shift_x": 0.0, "shift_y": 0.0, "magnification": 1.0}, "pelvis",
                     "right", 1024)
    assert grid.xs[0] < 0 < grid.xs[-1]  # the right hip (negative x) on the film's left
    bones = project(skeleton(p), grid, p)
    assert {"femur_right", "femur_left", "pelvis_right", "pelvis_left", "spine"} <= set(bones)
    film = simulate(p, "hip", "left", 64, np.random.default_rng(0))
    assert film.image.shape == film.bone_path.shape == (64, 51)
    assert film.pixel_spacing == pytest.approx(300 / 64)
    assert 0.4 < film.truth["femoral_neck_bmd"] < 1.5 and len(film.truth["neck_roi"]) == 4
