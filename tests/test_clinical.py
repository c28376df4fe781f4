import numpy as np
import pytest

from bmdkit import clinical
from bmdkit.clinical import bmd_at_t_score, convert_bmd, t_score, who_category


def test_lunar_femoral_neck_thresholds_of_the_paper():
    assert bmd_at_t_score(-1.0) == pytest.approx(0.899, abs=5e-4)
    assert bmd_at_t_score(-2.5) == pytest.approx(0.691, abs=5e-4)
    assert bmd_at_t_score(0.0) == pytest.approx(1.038, abs=5e-4)
    assert round(bmd_at_t_score(-1.0), 3) == clinical.LUNAR_T_MINUS_1_FEMORAL_NECK


def test_t_score_by_hand():
    # Hologic is the NHANES III scale: T = (BMD - 0.858) / 0.120
    assert t_score(0.618, device="hologic") == pytest.approx(-2.0)
    # Lunar: to sBMD (0.939 x - 0.023), back to Hologic ((s - 0.019) / 1.087), then T
    bmd = np.array([0.6, 0.8, 1.1])
    hologic = (0.939 * bmd - 0.023 - 0.019) / 1.087
    np.testing.assert_allclose(t_score(bmd), (hologic - 0.858) / 0.120)
    np.testing.assert_allclose(t_score(bmd_at_t_score(np.linspace(-4, 2, 7))),
                               np.linspace(-4, 2, 7), atol=1e-12)


def test_devices_and_overrides():
    lunar = 0.95
    hologic = convert_bmd(lunar, from_device="lunar", to_device="hologic")
    assert 1.087 * hologic + 0.019 == pytest.approx(0.939 * lunar - 0.023)
    assert t_score(hologic, device="hologic") == pytest.approx(t_score(lunar, device="lunar"))
    norland = convert_bmd(lunar, from_device="lunar", to_device="norland")
    assert 0.985 * norland + 0.006 == pytest.approx(0.939 * lunar - 0.023)
    # explicit equation and reference instead of names
    assert t_score(0.8, device="hologic", reference=(0.7, 0.1)) == pytest.approx(1.0)
    identity = (1.0, 0.0)
    assert t_score(0.8, device=identity, reference=(0.7, 0.1, identity)) == pytest.approx(1.0)
    assert t_score(0.9, site="total_hip", device="hologic") == pytest.approx((0.9 - 0.942) / 0.122)
    with pytest.raises(ValueError, match="unknown device"):
        t_score(0.8, device="stratos")
    with pytest.raises(ValueError, match="site"):
        t_score(0.8, site="lumbar_spine")


def test_who_categories_at_the_boundaries():
    t = [-3.0, -2.5, -2.4999, -1.0001, -1.0, 2.0]
    assert who_category(t).tolist() == [
        "osteoporosis", "osteoporosis", "osteopenia", "osteopenia", "normal", "normal"]
    assert who_category(-1.7) == "osteopenia"
    with pytest.raises(ValueError, match="NaN"):
        who_category([np.nan])
