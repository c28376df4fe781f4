"""What every awkward input gets: it works, it works with a named warning, or one clear error
naming every culprit, raised before any training.

Each case below builds its input and the call a user would make; ``expect`` is the outcome.
No IndexError, KeyError, AttributeError or shape error may reach the user. The table is
documented in docs/data.md ("What is checked").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy import sparse
from settings import TINY_SEVERAL_BATCHES
from skorch.callbacks import Callback

from bmdkit import BMDStratifiedKFold, ConcatBMDRegressor, MetadataOnlyBMDRegressor, load_cohort
from bmdkit.checks import (
    ImputationWarning,
    InputColumnWarning,
    InputError,
    TargetUnitWarning,
)
from bmdkit.evaluation import compare_models

N = 16
#: On one thread: these tests run beside others.
ONE_THREAD = dict(TINY_SEVERAL_BATCHES, n_threads=1)


class _NoTraining(Callback):
    """Fails the test if training starts: errors must come before it."""

    def on_train_begin(self, net, **kwargs):
        if _NoTraining.armed:
            raise AssertionError("training started before the error")

    armed = False


def image_model(**params):
    return ConcatBMDRegressor(**{**ONE_THREAD, "callbacks": [_NoTraining()], **params})


def metadata_model(**params):
    return MetadataOnlyBMDRegressor(**{"max_epochs": 1, "random_state": 0, "n_threads": 1,
                                       "callbacks": [_NoTraining()], **params})


@dataclass
class Env:
    folder: object
    X: pd.DataFrame  # image_path, age, sex; N rows
    y: np.ndarray

    def png(self, name, array, mode=None):
        path = self.folder / name
        image = Image.fromarray(array)
        (image if mode is None else image.convert(mode)).save(path)
        return str(path)

    def with_images(self, paths):
        X = self.X.copy()
        X.loc[: len(paths) - 1, "image_path"] = paths
        return X


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N):
        path = folder / f"hip_{i}.png"
        Image.fromarray(rng.integers(0, 65535, (24, 20), dtype=np.uint16)).save(path)
        paths.append(str(path))
    age = rng.uniform(60, 85, N)
    X = pd.DataFrame({"image_path": paths, "age": age, "sex": rng.choice(["F", "M"], N)})
    y = 1.25 - 0.006 * age + rng.normal(0, 0.03, N)
    return Env(folder, X, y)


def _dicom_without_pixels(path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"  # an SR document
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.PatientName = "SYNTHETIC^REPORT"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.save_as(path, enforce_file_format=True)
    return str(path)


# -- the cases: name -> (expected outcome, build(env) -> the user's call) -------------------------
WORKS = "works"
CASES = {}


def case(expect, *culprits, warning=None, error=InputError):
    """Register a case: ``expect`` is WORKS (maybe with ``warning``) or "error" naming culprits."""
    def register(build):
        CASES[build.__name__] = (build, expect, culprits, warning, error)
        return build
    return register


def fit_predict(model, X, y, X_new=None):
    return lambda: model.fit(X, y).predict(X if X_new is None else X_new)


# metadata
@case(WORKS, warning=ImputationWarning)
def all_missing_numeric_column(env):
    X = env.X.assign(sparse=np.nan)
    return fit_predict(metadata_model(), X, env.y)


@case(WORKS, warning=ImputationWarning)
def nan_in_numeric_column(env):
    X = env.X.copy()
    X.loc[[2, 5], "age"] = np.nan
    return fit_predict(metadata_model(), X, env.y)


@case("error", "3, 'age': inf", "9, 'bmi': -inf")
def inf_in_numeric_columns(env):
    X = env.X.assign(bmi=27.0)
    X.loc[3, "age"], X.loc[9, "bmi"] = np.inf, -np.inf
    return fit_predict(metadata_model(), X, env.y)


@case("error", "'?'")
def text_among_numbers(env):  # a CSV's "?" among ages: an error, not a category per age
    X = env.X.assign(age=env.X["age"].round().astype(int).astype(str))
    X.loc[4, "age"] = "?"
    return fit_predict(metadata_model(), X, env.y)


@case(WORKS)
def boolean_column(env):
    return fit_predict(metadata_model(), env.X.assign(smoker=np.arange(N) % 3 == 0), env.y)


@case("error", "'scan_date'")
def datetime_column(env):
    X = env.X.assign(scan_date=pd.date_range("2020-01-01", periods=N))
    return fit_predict(metadata_model(), X, env.y)


@case(WORKS)
def single_category_level(env):
    return fit_predict(metadata_model(), env.X.assign(sex="F"), env.y)


@case(WORKS)
def constant_numeric_column(env):
    return fit_predict(metadata_model(), env.X.assign(site=1.0), env.y)


@case(WORKS)
def number_typed_categorical_column(env):
    X = env.X.assign(grade=np.arange(N) % 3)
    return fit_predict(metadata_model(categorical_cols=["sex", "grade"]), X, env.y)


@case("error", "'age'")
def column_both_numeric_and_categorical(env):
    return fit_predict(metadata_model(numeric_cols=["age"], categorical_cols=["age", "sex"]),
                       env.X, env.y)


@case("error", "'age'")
def duplicate_column_names(env):
    X = pd.concat([env.X, env.X[["age"]]], axis=1)
    return fit_predict(metadata_model(), X, env.y)


@case("error", "'height'", "'weight'")
def named_columns_missing(env):
    return fit_predict(metadata_model(numeric_cols=["age", "height", "weight"]), env.X, env.y)


@case(WORKS)
def columns_in_another_order_at_predict(env):
    model = metadata_model().fit(env.X, env.y)
    expected = model.predict(env.X)
    return lambda: np.testing.assert_array_equal(model.predict(env.X[["sex", "age"]]), expected)


@case(WORKS)
def extra_columns_at_predict(env):
    model = metadata_model().fit(env.X, env.y)
    expected = model.predict(env.X)
    return lambda: np.testing.assert_array_equal(
        model.predict(env.X.assign(notes="seen later")), expected)


@case("error", "'age'", "'sex'")
def columns_missing_at_predict(env):
    model = metadata_model().fit(env.X, env.y)
    return lambda: model.predict(env.X[["image_path"]])


@case(WORKS)
def unseen_category_at_predict(env):
    model = metadata_model().fit(env.X, env.y)
    return lambda: model.predict(env.X.assign(sex="X"))


@case(WORKS)
def no_rows_at_predict(env):
    model = metadata_model().fit(env.X, env.y)
    return lambda: np.testing.assert_equal(model.predict(env.X.iloc[:0]).shape, (0,))


@case("error", "sparse", error=TypeError)
def sparse_matrix(env):
    return fit_predict(metadata_model(), sparse.csr_matrix(np.ones((N, 2))), env.y)


# targets and rows
@case("error", "2: nan", "5: inf", "6: 'n/a'")
def bad_targets(env):
    y = env.y.astype(object)
    y[[2, 5, 6]] = [np.nan, np.inf, "n/a"]
    return fit_predict(metadata_model(), env.X, y)


@case("error", "X rows", "y values")
def x_and_y_differ_in_length(env):
    return fit_predict(metadata_model(), env.X, env.y[:-1])


@case(WORKS, warning=TargetUnitWarning)
def target_in_mg_per_cm2(env):
    return fit_predict(metadata_model(), env.X, env.y * 1000)


@case(WORKS, warning=TargetUnitWarning)
def target_as_t_scores(env):
    return fit_predict(metadata_model(), env.X, (env.y - 1.038) / 0.139)


@case("error", "n_samples=1", error=ValueError)
def one_row(env):
    return fit_predict(metadata_model(), env.X.iloc[:1], env.y[:1])


@case("error", "10 folds", "got 8 rows", error=ValueError)
def fewer_rows_than_folds(env):
    return lambda: compare_models({"m": metadata_model()}, env.X.iloc[:8], env.y[:8],
                                  cv=BMDStratifiedKFold(10), progress=False)


@case("error", "KFold", "BMDStratifiedGroupKFold", error=ValueError)
def patient_split_across_folds(env):
    groups = np.repeat(np.arange(N // 2), 2)
    from sklearn.model_selection import KFold
    return lambda: compare_models({"m": metadata_model()}, env.X, env.y, cv=KFold(3),
                                  groups=groups, progress=False)


# images
@case("error", "gone.png", "corrupt.png", "a_folder", "row 3", "empty.png")
def every_kind_of_bad_image_path(env):
    (env.folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (env.folder / "a_folder").mkdir(exist_ok=True)
    (env.folder / "empty.png").write_bytes(b"")
    X = env.with_images([str(env.folder / "gone.png"), str(env.folder / "corrupt.png"),
                         str(env.folder / "a_folder"), "", str(env.folder / "empty.png")])
    return fit_predict(image_model(), X, env.y)


@case("error", "'image_path'")
def image_column_missing(env):
    return fit_predict(image_model(), env.X.drop(columns="image_path"), env.y)


@case("error", "no pixel data")
def dicom_without_pixel_data(env):
    X = env.with_images([_dicom_without_pixels(env.folder / "report.dcm")])
    return fit_predict(image_model(), X, env.y)


@case("error", "blank.png", "blank image")
def blank_image(env):
    X = env.with_images([env.png("blank.png", np.full((20, 20), 9, np.uint8))])
    return fit_predict(image_model(), X, env.y)


def _gradient(h, w, dtype=np.uint8):
    top = np.iinfo(dtype).max
    return (np.add.outer(np.arange(h), np.arange(w)) * top // (h + w)).astype(dtype)


@case(WORKS)
def images_8_and_16_bit_rgb_palette_cmyk_rgba(env):
    gray = _gradient(30, 24)
    rgb = np.stack([gray, gray[::-1], gray[:, ::-1]], axis=-1)
    paths = [env.png("gray8.png", gray), env.png("gray16.png", _gradient(30, 24, np.uint16)),
             env.png("rgb.png", rgb), env.png("palette.png", rgb, "P"),
             env.png("rgba.png", rgb, "RGBA")]
    Image.fromarray(rgb).convert("CMYK").save(env.folder / "cmyk.jpg")
    paths.append(str(env.folder / "cmyk.jpg"))
    return fit_predict(image_model(), env.with_images(paths), env.y)


@case(WORKS)
def huge_and_tiny_images(env):
    paths = [env.png("huge.png", _gradient(2400, 2000)), env.png("tiny.png", _gradient(3, 2))]
    return fit_predict(image_model(), env.with_images(paths), env.y)


@case(WORKS)
def unicode_and_spaces_in_paths(env):
    folder = env.folder / "Röntgen bilder ü"
    folder.mkdir(exist_ok=True)
    paths = [str(folder / "hüfte links 1.png"), str(folder / "股骨 2.png")]
    for path in paths:
        Image.fromarray(_gradient(20, 20)).save(path)
    return fit_predict(image_model(), env.with_images(paths), env.y)


@case(WORKS)
def last_batch_of_one_row(env):  # n_train % batch_size == 1: BatchNorm at 1x1 feature maps
    return fit_predict(image_model(batch_size=8), env.X.iloc[:9], env.y[:9])


# settings
@case("error", "dropout", error=ValueError)
def dropout_out_of_range(env):
    return fit_predict(metadata_model(dropout=1.5), env.X, env.y)


@case("error", "lr", error=ValueError)
def non_positive_learning_rate(env):
    return fit_predict(metadata_model(lr=0.0), env.X, env.y)


@case("error", "low_bmd_weight", error=ValueError)
def negative_low_bmd_weight(env):
    return fit_predict(metadata_model(low_bmd_weight=-2.0), env.X, env.y)


@case("error", "n_threads", error=ValueError)
def no_threads(env):
    return fit_predict(metadata_model(n_threads=0), env.X, env.y)


# a cohort CSV
@case(WORKS, warning=InputColumnWarning)
def identifier_and_copied_target_columns_in_a_csv(env):
    table = env.X.assign(record=np.arange(1000, 1000 + N),
                         t_score=(env.y - 1.038) / 0.139, bmd=env.y)
    table.to_csv(env.folder / "ids.csv", index=False)
    return lambda: load_cohort(env.folder / "ids.csv", target="bmd")


UNFRIENDLY = (IndexError, KeyError, AttributeError, AssertionError)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, env):
    build, expect, culprits, warning, error = CASES[name]
    call = build(env)
    _NoTraining.armed = expect != WORKS
    try:
        if expect == WORKS:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                call()
            if warning is not None:
                assert any(issubclass(w.category, warning) for w in caught), (
                    f"expected a {warning.__name__}, got {[w.category for w in caught]}")
            return
        with pytest.raises(Exception) as info:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call()
    finally:
        _NoTraining.armed = False
    assert not isinstance(info.value, UNFRIENDLY), repr(info.value)
    assert isinstance(info.value, error), repr(info.value)
    for culprit in culprits:
        assert culprit in str(info.value), (culprit, str(info.value))


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 30
