"""Every bad input raises one error naming every offending item, before any training."""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from settings import TINY

from bmdkit import ConcatBMDRegressor, MetadataOnlyBMDRegressor, load_cohort
from bmdkit.checks import ImputationWarning, InputError


@pytest.fixture()
def cohort(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 65535, (24, 24), dtype=np.uint16)).save(path)
        paths.append(str(path))
    X = pd.DataFrame({"image_path": paths, "age": np.linspace(70, 80, 8),
                      "sex": ["F", "M"] * 4})
    return X, np.linspace(0.6, 1.0, 8)


def fails(model, X, y, tmp_path):
    """Fit must raise InputError and leave no trained state and no files behind."""
    before = set(os.listdir(tmp_path))
    with pytest.raises(InputError) as info:
        model.fit(X, y)
    assert not hasattr(model, "net_")
    assert set(os.listdir(tmp_path)) == before
    return str(info.value)


def test_every_missing_file_is_named(cohort, tmp_path):
    X, y = cohort
    X = X.copy()
    X.loc[[1, 5], "image_path"] = [str(tmp_path / "gone1.png"), str(tmp_path / "gone5.png")]
    message = fails(ConcatBMDRegressor(**TINY), X, y, tmp_path)
    assert "2 image files" in message and "gone1.png" in message and "gone5.png" in message


def test_every_corrupt_or_empty_image_is_named(cohort, tmp_path):
    X, y = cohort
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.fromarray(np.full((24, 24), 7, np.uint8)).save(tmp_path / "blank.png")
    X = X.copy()
    X.loc[[0, 3, 6], "image_path"] = [str(tmp_path / n) for n in
                                      ("corrupt.png", "empty.png", "blank.png")]
    message = fails(ConcatBMDRegressor(**TINY), X, y, tmp_path)
    for name in ("corrupt.png", "empty.png", "blank.png"):
        assert name in message


def test_every_bad_target_is_named(cohort, tmp_path):
    X, y = cohort
    y = y.astype(object)
    y[[2, 4, 7]] = [np.nan, np.inf, "n/a"]
    message = fails(ConcatBMDRegressor(**TINY), X, y, tmp_path)
    assert "3 target values" in message
    for row in ("2:", "4:", "7:"):
        assert row in message


def test_every_non_numeric_cell_is_named(cohort, tmp_path):
    X, y = cohort
    X = X.assign(age=X["age"].astype(object))
    X.loc[[1, 6], "age"] = ["seventy", "?"]
    message = fails(ConcatBMDRegressor(**TINY, numeric_cols=["age"], categorical_cols=["sex"]),
                    X, y, tmp_path)
    assert "'seventy'" in message and "'?'" in message


def test_mostly_numeric_text_columns_are_caught_without_naming_them(tmp_path):
    """A CSV's stray "unknown" among ages is an error, not a 20-category column."""
    ages = [str(70 + i) for i in range(20)]
    ages[3] = "unknown"
    X = pd.DataFrame({"age": ages, "bmi": ["25"] * 19 + ["x"], "sex": ["F", "M"] * 10})
    message = fails(MetadataOnlyBMDRegressor(**TINY), X, np.linspace(0.6, 1, 20), tmp_path)
    assert "'unknown'" in message and "'x'" in message


def test_missing_image_column_is_named(cohort, tmp_path):
    X, y = cohort
    message = fails(ConcatBMDRegressor(**TINY), X.drop(columns="image_path"), y, tmp_path)
    assert "'image_path'" in message


def test_missing_metadata_columns_at_predict_are_all_named(cohort):
    X, y = cohort
    model = ConcatBMDRegressor(**TINY).fit(X, y)
    with pytest.raises(InputError) as info:
        model.predict(X.drop(columns=["age", "sex"]))
    assert "'age'" in str(info.value) and "'sex'" in str(info.value)


def test_missing_metadata_values_are_imputed_and_counted(cohort):
    X, y = cohort
    X = X.assign(age=[np.nan, 71, np.nan] + list(X["age"][3:]), sex=[None] + list(X["sex"][1:]))
    with pytest.warns(ImputationWarning, match="imputed 3 missing metadata values"):
        pred = ConcatBMDRegressor(**TINY).fit(X, y).predict(X)
    assert np.isfinite(pred).all()


def test_load_cohort_names_every_missing_file_and_column(tmp_path):
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "c.csv").write_text("image_path,age,bmd\nok.png,70,0.8\na.png,71,0.9\nb.png,72,\n")
    with pytest.raises(InputError, match="a.png") as info:
        load_cohort(tmp_path / "c.csv", target="bmd")
    assert "b.png" in str(info.value)
    with pytest.raises(InputError, match="'fn_bmd'"):
        load_cohort(tmp_path / "c.csv", target="fn_bmd")


def test_bmdkit_validation_is_a_deprecated_alias_of_bmdkit_checks():
    import importlib
    import sys

    import bmdkit.checks

    sys.modules.pop("bmdkit.validation", None)
    with pytest.warns(DeprecationWarning, match="import bmdkit.checks"):
        validation = importlib.import_module("bmdkit.validation")
    assert validation.InputError is bmdkit.checks.InputError
    assert all(getattr(validation, name) is getattr(bmdkit.checks, name)
               for name in bmdkit.checks.__all__)
