"""The SYNTHETIC demo cohort and load_cohort."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bmdkit import load_demo_cohort
from bmdkit.datasets import make_synthetic_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_synthetic_cohort(n=233, image_size=64, random_state=0,
                                 out_dir=tmp_path_factory.mktemp("phantoms"))


def test_metadata_match_the_reference_cohort(cohort):
    X, y = cohort
    assert X.attrs["synthetic"] is True
    assert list(X.columns) == [
        "image_path", "age_at_xray", "age_at_bmd", "height_cm", "weight_kg", "bmi",
        "alcohol_units_per_week", "physical_activity", "diet_quality", "sex", "smoking"]
    assert 71.6 <= X["age_at_xray"].min() and X["age_at_xray"].max() <= 80.6
    assert (X["age_at_bmd"] >= X["age_at_xray"]).all()
    assert 0.40 < (X["sex"] == "F").mean() < 0.58
    np.testing.assert_allclose(X["bmi"], X["weight_kg"] / (X["height_cm"] / 100) ** 2, atol=0.1)
    assert set(X["smoking"].dropna()) == {"never", "former", "current"}
    assert 0 < X.isna().sum().sum() < 0.05 * X.size


def test_bmd_is_realistic_for_the_seventies(cohort):
    """NHANES III femoral neck at 70-79 (Looker et al. 1998) on the Lunar scale: F 0.80, M 0.94."""
    X, y = cohort
    women, men = y[X["sex"] == "F"], y[X["sex"] == "M"]
    assert 0.75 < women.mean() < 0.85 and 0.89 < men.mean() < 0.99
    assert 0.09 < women.std() < 0.18 and 0.09 < men.std() < 0.18
    assert 0.08 < (women <= 0.691).mean() < 0.35, "osteoporosis (T <= -2.5 on Lunar) in women"


def test_images_are_16_bit_hip_films(cohort):
    X, y = cohort
    image = Image.open(X["image_path"][0])  # a 30 x 24 cm film, 64 px on its long side
    assert image.size == (51, 64) and np.asarray(image).dtype == np.uint16
    means = np.array([np.asarray(Image.open(p), np.float64).mean() for p in X["image_path"]])
    assert np.ptp(means) > 0


def test_the_same_seed_gives_the_same_cohort(tmp_path):
    X1, y1 = make_synthetic_cohort(n=5, image_size=32, random_state=3, out_dir=tmp_path / "a")
    X2, y2 = make_synthetic_cohort(n=5, image_size=32, random_state=3, out_dir=tmp_path / "b")
    np.testing.assert_array_equal(y1, y2)
    pd.testing.assert_frame_equal(X1.drop(columns="image_path"), X2.drop(columns="image_path"))
    for a, b in zip(X1["image_path"], X2["image_path"]):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_demo_cohort_is_generated_once_then_reused(tmp_path):
    X, y = load_demo_cohort(n=10, image_size=32, data_home=tmp_path)
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / "README.txt").read_text().startswith("SYNTHETIC")
    stamp = (folders[0] / "cohort.csv").stat().st_mtime_ns
    X2, y2 = load_demo_cohort(n=10, image_size=32, data_home=tmp_path)
    assert (folders[0] / "cohort.csv").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(y, y2)
    assert X2.attrs["synthetic"] and len(X2) == 10


def test_load_cohort_resolves_paths_against_the_csv_or_image_root(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "imgs" / "a.png")
    (tmp_path / "c.csv").write_text("\ufeffscan,Age (years),BMD\nimgs/a.png,70,0.8\n",
                                    encoding="utf-8")
    from bmdkit import load_cohort

    X, y = load_cohort(tmp_path / "c.csv", image_col="scan", target="BMD")
    assert list(X.columns) == ["scan", "Age (years)"] and y.tolist() == [0.8]
    assert X["scan"][0] == str(tmp_path / "imgs" / "a.png")
    (tmp_path / "d.csv").write_text("scan,BMD\na.png,0.8\n")
    X, _ = load_cohort(tmp_path / "d.csv", image_col="scan", target="BMD",
                       image_root=tmp_path / "imgs")
    assert X["scan"][0] == str(tmp_path / "imgs" / "a.png")


def test_rendering_shows_progress_by_the_load_images_rule(tmp_path, monkeypatch):
    import bmdkit.datasets.synthetic as synthetic
    import bmdkit.io.cache

    bars = []

    class Bar:
        def __init__(self, **kwargs):
            self.kwargs, self.n = kwargs, 0
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            self.n += n

    monkeypatch.setattr(synthetic, "tqdm", Bar)
    make_synthetic_cohort(n=5, image_size=16, out_dir=tmp_path / "a")
    monkeypatch.setattr(bmdkit.io.cache, "PROGRESS_MIN_FILES", 5)
    make_synthetic_cohort(n=5, image_size=16, out_dir=tmp_path / "b")
    assert [(b.kwargs["total"], b.kwargs["disable"], b.n) for b in bars] == [
        (5, True, 5), (5, None, 5)]


def test_pelvis_cohort_shows_both_hips_and_names_the_measured_side(tmp_path):
    X, y = make_synthetic_cohort(n=12, image_size=32, random_state=0, out_dir=tmp_path,
                                 view="pelvis")
    assert X.attrs["synthetic"] and set(X["dxa_side"]) == {"left", "right"}
    image = np.asarray(Image.open(X["image_path"][0]))
    assert image.shape == (26, 32) and image.dtype == np.uint16  # 35 x 43 cm, landscape
    Xb, yb = make_synthetic_cohort(n=12, image_size=32, random_state=0, out_dir=tmp_path / "b",
                                   bilateral=True)  # the former name of the pelvis view
    np.testing.assert_array_equal(y, yb)
    assert (Xb["dxa_side"] == X["dxa_side"]).all()
    X1, _ = make_synthetic_cohort(n=12, image_size=32, random_state=0, out_dir=tmp_path / "u")
    assert "dxa_side" not in X1  # the default cohort is unchanged
    folder = load_demo_cohort(n=6, image_size=32, data_home=tmp_path / "home", bilateral=True)
    assert "dxa_side" in folder[0]


def test_demo_cohort_gives_several_sites_and_the_truth(tmp_path):
    X, y, truth = load_demo_cohort(n=5, image_size=32, data_home=tmp_path, view="pelvis",
                                   sites=("femoral_neck", "total_hip"), return_truth=True)
    assert list(y.columns) == ["femoral_neck", "total_hip"] and "total_hip" not in X
    assert list(truth.index) == list(X.index)
    assert all(Image.open(p).mode == "F" for p in truth["bone_path"])
    assert all(len(corners) == 4 for corners in truth["neck_roi"])
    np.testing.assert_allclose(y["femoral_neck"], truth["femoral_neck_bmd"], rtol=0.06)
    X2, y2, truth2 = load_demo_cohort(n=5, image_size=32, data_home=tmp_path, view="pelvis",
                                      sites=("femoral_neck", "total_hip"), return_truth=True)
    assert truth2.equals(truth) and y2.equals(y)
    X1, y1 = load_demo_cohort(n=5, image_size=32, data_home=tmp_path, view="pelvis",
                              sites="total_hip")
    np.testing.assert_array_equal(y1, y["total_hip"])


def test_bad_cohort_parameters_are_named(tmp_path):
    from bmdkit.errors import ParameterError

    with pytest.raises(ParameterError, match="view"):
        make_synthetic_cohort(n=2, image_size=16, out_dir=tmp_path, view="knee")
    with pytest.raises(ParameterError, match="sites"):
        make_synthetic_cohort(n=2, image_size=16, out_dir=tmp_path, sites=("spine",))
    for sites in (None, (), 3):  # not a TypeError from iterating them
        with pytest.raises(ParameterError, match=f"sites must be .*, got {sites!r}"):
            make_synthetic_cohort(n=2, image_size=16, out_dir=tmp_path, sites=sites)
    with pytest.raises(ParameterError, match="image_format"):
        make_synthetic_cohort(n=2, image_size=16, out_dir=tmp_path, image_format="jpeg")
    with pytest.raises(ValueError, match="image_size"):  # still a ValueError for callers
        make_synthetic_cohort(n=2, image_size=4, out_dir=tmp_path)
