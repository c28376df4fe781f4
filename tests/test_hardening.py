"""Defects an outside review found (issue 11): each test failed before its fix."""

from __future__ import annotations

import json
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch
from optuna.distributions import FloatDistribution
from settings import TINY
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import KFold
from skorch.callbacks import Callback

from bmdkit import (
    BMDStratifiedKFold,
    ConcatBMDRegressor,
    MetadataOnlyBMDRegressor,
    XAttnBMDRegressor,
    cli,
    load_cohort,
)
from bmdkit.checks import InputColumnWarning, InputError, TargetUnitWarning
from bmdkit.preprocessing import BMDPreprocessor
from bmdkit.tuning import tune


@pytest.fixture(scope="module")
def small(signal_cohort):
    X, y = signal_cohort
    return X.iloc[:40].reset_index(drop=True), y[:40]


def _metadata(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.uniform(50, 90, n), "sex": rng.choice(["F", "M"], n)})
    y = 1.2 - 0.006 * X["age"].to_numpy() + 0.1 * (X["sex"] == "M") + rng.normal(0, 0.05, n)
    return X, np.asarray(y, dtype=np.float64)


# -- 1. an all-missing numeric column in the training rows -------------------------------
def test_an_all_missing_numeric_column_keeps_every_other_column_in_place():
    X = pd.DataFrame({"sparse": [np.nan] * 4, "age": [60.0, 70.0, 80.0, 90.0],
                      "sex": ["F", "M", "F", "M"]})
    with pytest.warns(UserWarning):
        arrays = BMDPreprocessor(image_col=None).fit_transform(X)
    assert arrays["numeric"].shape == (4, 2)
    np.testing.assert_array_equal(arrays["numeric"][:, 0], 0.0)  # imputed, then centred
    np.testing.assert_allclose(arrays["numeric"][:, 1], (X["age"] - 75) / X["age"].std(ddof=0),
                               rtol=1e-6)
    assert arrays["categorical"][:, 0].tolist() == [1, 2, 1, 2]


def test_a_fold_where_a_sparse_field_is_all_missing_trains_and_predicts():
    X, y = _metadata()
    X["sparse"] = np.where(np.arange(len(X)) < 40, np.nan, 1.0)  # all missing in rows 0..39
    model = MetadataOnlyBMDRegressor(max_epochs=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X.iloc[:40], y[:40])
        assert model.predict(X.iloc[40:]).shape == (20,)


# -- 2. a column used twice ------------------------------------------------------------------
def test_a_numeric_typed_categorical_column_is_not_also_numeric():
    X = pd.DataFrame({"age": [60.0, 70.0, 80.0], "grade": [1, 2, 3]})
    pre = BMDPreprocessor(image_col=None, categorical_cols=["grade"]).fit(X)
    assert pre.numeric_cols_ == ["age"] and pre.categorical_cols_ == ["grade"]
    pre = BMDPreprocessor(image_col=None, numeric_cols=["grade"]).fit(X)
    assert pre.numeric_cols_ == ["grade"] and pre.categorical_cols_ == []


def test_a_column_named_both_numeric_and_categorical_is_an_error():
    X = pd.DataFrame({"age": [60.0, 70.0, 80.0], "grade": [1, 2, 3]})
    with pytest.raises(InputError, match="both numeric_cols and categorical_cols") as info:
        BMDPreprocessor(image_col=None, numeric_cols=["age", "grade"],
                        categorical_cols=["grade"]).fit(X)
    assert "'grade'" in str(info.value) and "'age'" not in str(info.value)


# -- 7. a last training batch of one sample ----------------------------------------------
def test_a_last_batch_of_one_sample_does_not_crash_batchnorm(small):
    X, y = small
    # resnet10t at 32 px ends in 1x1 feature maps: BatchNorm cannot train on a batch of one
    model = ConcatBMDRegressor(**dict(TINY, batch_size=16))
    model.fit(X.iloc[:17], y[:17])
    assert np.isfinite(model.predict(X.iloc[:3])).all()


# -- 8. per-fit generators, not torch's global one ---------------------------------------
def test_fit_leaves_the_global_torch_generator_alone(small, tmp_path):
    import bmdkit

    X, y = small
    torch.manual_seed(123)
    state = torch.get_rng_state()
    model = ConcatBMDRegressor(**dict(TINY, max_epochs=1, early_stopping=True)).fit(X, y)
    model.predict(X)
    bmdkit.load(model.save(tmp_path / "model")).predict(X)
    assert torch.equal(torch.get_rng_state(), state)


def test_fits_in_threads_are_reproducible(small):
    X, y = small
    params = dict(TINY, max_epochs=2, batch_size=8, dropout=0.3, n_threads=1)

    def fit(seed):
        return XAttnBMDRegressor(**dict(params, random_state=seed)).fit(X, y).predict(X)

    alone = [fit(0), fit(1)]
    start = threading.Barrier(4)

    def racing(seed):
        start.wait()
        return fit(seed)

    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(racing, [0, 1, 0, 1]))
    for i, predictions in enumerate(together):
        np.testing.assert_array_equal(predictions, alone[i % 2])
    assert not np.array_equal(alone[0], alone[1])


# -- 9. targets in the wrong unit (unchecked settings: tests/test_params.py) ------------
@pytest.mark.parametrize("scale, shift, unit", [(1000.0, 0.0, "mg/cm"), (8.0, -7.0, "T-score")])
def test_targets_in_another_unit_are_named_in_a_warning(scale, shift, unit):
    X, y = _metadata()
    with pytest.warns(TargetUnitWarning, match=unit):
        MetadataOnlyBMDRegressor(max_epochs=1).fit(X, y * scale + shift)


def test_plausible_bmd_gives_no_unit_warning():
    X, y = _metadata()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TargetUnitWarning)
        MetadataOnlyBMDRegressor(max_epochs=1).fit(X, y)


# -- 10. a failed refit leaves the estimator as it was ---------------------------------
class _Explode(Callback):
    def on_epoch_begin(self, net, **kwargs):
        raise RuntimeError("training failed")


def test_a_failed_refit_leaves_the_fitted_model_untouched(small, tmp_path):
    X, y = small
    model = ConcatBMDRegressor(**TINY).fit(X, y)
    before = {k: v for k, v in vars(model).items() if k.endswith("_")}
    predictions = model.predict(X)
    (tmp_path / "corrupt.png").write_bytes(b"not an image")
    bad = X.copy()
    bad.loc[3, "image_path"] = str(tmp_path / "corrupt.png")
    with pytest.raises(InputError):
        model.fit(bad.assign(extra=1.0), y)  # fails after the new preprocessor is fitted
    model.set_params(callbacks=[_Explode()])
    with pytest.raises(RuntimeError, match="training failed"):
        model.fit(X, y)
    after = {k: v for k, v in vars(model).items() if k.endswith("_")}
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)
    np.testing.assert_array_equal(model.predict(X), predictions)


def test_a_failed_first_fit_leaves_no_fitted_state(small):
    X, y = small
    model = ConcatBMDRegressor(**dict(TINY, callbacks=[_Explode()]))
    with pytest.raises(RuntimeError):
        model.fit(X, y)
    assert not [k for k in vars(model) if k.endswith("_")]


# -- 13. empty frames -------------------------------------------------------------------
def test_predicting_no_rows_returns_an_empty_vector(small):
    X, y = small
    model = XAttnBMDRegressor(**TINY).fit(X, y)
    assert model.predict(X.iloc[:0]).shape == (0,)
    attention = model.attention(X.iloc[:0])
    full = model.attention(X.iloc[:2])
    assert attention["image_to_metadata"].shape == (0, *full["image_to_metadata"].shape[1:])
    assert attention["metadata_to_image"].shape == (0, *full["metadata_to_image"].shape[1:])
    with pytest.raises(InputError, match="'age'"):  # columns are still checked
        model.predict(X.iloc[:0].drop(columns=["age"]))


def test_metadata_only_predicts_no_rows():
    X, y = _metadata()
    model = MetadataOnlyBMDRegressor(max_epochs=1, random_state=0).fit(X, y)
    assert model.predict(X.iloc[:0]).shape == (0,)


# -- 5, 6. tuning folds: shuffled, stratified, identical between calls; patients kept whole --
class _RecordFolds(RegressorMixin, BaseEstimator):
    """Predicts the training mean and records which rows it was trained on."""

    seen = []

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y):
        _RecordFolds.seen.append(tuple(X["row"]))
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


def _tuned_folds(X, y, **kwargs):
    _RecordFolds.seen = []
    tune(_RecordFolds(), X, y, n_trials=1, space={"alpha": FloatDistribution(0.1, 1.0)},
         **kwargs)
    return list(_RecordFolds.seen)


def test_tuning_folds_by_default_are_shuffled_stratified_and_the_same_every_call():
    n = 100
    y = np.sort(np.random.default_rng(0).normal(0.85, 0.12, n))  # sorted: KFold would not mix
    X = pd.DataFrame({"row": np.arange(n)})
    first, second = _tuned_folds(X, y), _tuned_folds(X, y)
    assert first == second and len(first) == 5
    for train in first:
        test = np.setdiff1d(np.arange(n), train)
        assert abs(y[test].mean() - y.mean()) < 0.03  # every fold spans the BMD range
    assert BMDStratifiedKFold().random_state == 0  # a splitter made without a seed agrees too


def test_tuning_keeps_each_patient_in_one_fold():
    n = 80
    rng = np.random.default_rng(1)
    patients = np.repeat(np.arange(n // 2), 2)  # two images per patient
    y = np.repeat(rng.normal(0.85, 0.12, n // 2), 2)
    X = pd.DataFrame({"row": np.arange(n)})
    for train in _tuned_folds(X, y, groups=patients):
        test = np.setdiff1d(np.arange(n), train)
        assert not set(patients[list(train)]) & set(patients[test])
    with pytest.raises(ValueError, match="patient|group") as info:
        _tuned_folds(X, y, groups=patients, cv=KFold(3))
    assert "BMDStratifiedGroupKFold" in str(info.value)


def test_cv_command_keeps_each_patient_in_one_fold(tmp_path, capsys):
    rng = np.random.default_rng(2)
    n = 40
    table = pd.DataFrame({"patient": np.repeat([f"p{i}" for i in range(n // 2)], 2),
                          "age": rng.uniform(60, 85, n), "sex": rng.choice(["F", "M"], n)})
    table["bmd"] = 1.3 - 0.006 * table["age"] + rng.normal(0, 0.03, n)
    table.to_csv(tmp_path / "cohort.csv", index=False)
    cli.main(["cv", "--csv", str(tmp_path / "cohort.csv"), "--target", "bmd", "--groups",
              "patient", "--models", "metadata", "--folds", "4", "--epochs", "1",
              "--out", str(tmp_path / "cv")])
    predictions = pd.read_csv(tmp_path / "cv" / "results" / "predictions.csv")
    patient = table["patient"].to_numpy()[predictions["row"]]
    assert (pd.Series(patient).groupby(predictions["fold"].to_numpy()).nunique().sum()
            == n // 2)  # no patient in two test folds
    assert "patient" not in json.loads(
        (tmp_path / "cv" / "results" / "results.json").read_text())["models"]["Metadata-only"]
    with pytest.raises(SystemExit):
        cli.main(["cv", "--csv", str(tmp_path / "cohort.csv"), "--target", "bmd", "--groups",
                  "clinic", "--models", "metadata", "--out", str(tmp_path / "cv2")])
    assert "'clinic'" in capsys.readouterr().err


# -- 3. every bad image path in one error, of every kind -------------------------------
def _bad_images(folder, X):
    """X with rows 1..5 pointing at a missing file, a corrupt one, a folder, no path, 0 bytes."""
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "a_folder.png").mkdir()
    (folder / "empty.png").write_bytes(b"")
    X = X.copy()
    X.loc[1:5, "image_path"] = [str(folder / "gone.png"), str(folder / "corrupt.png"),
                                str(folder / "a_folder.png"), "", str(folder / "empty.png")]
    return X


def test_every_bad_image_of_every_kind_is_named_in_one_error(small, tmp_path):
    X, y = small
    y = y.copy()
    y[7] = np.nan
    model = ConcatBMDRegressor(**TINY)
    with pytest.raises(InputError) as info:
        model.fit(_bad_images(tmp_path, X), y)
    message = str(info.value)
    for name in ("gone.png", "corrupt.png", "a_folder.png", "row 4", "empty.png", "7: nan"):
        assert name in message, name
    assert not hasattr(model, "net_")


def test_load_cohort_names_every_bad_file_column_and_target_at_once(small, tmp_path):
    X, y = small
    table = _bad_images(tmp_path, X).assign(bmd=y)
    table.loc[6, "bmd"] = None
    table.to_csv(tmp_path / "cohort.csv", index=False)
    with pytest.raises(InputError) as info:
        load_cohort(tmp_path / "cohort.csv", target="bmd", exclude=["no_such_column"])
    message = str(info.value)
    for name in ("gone.png", "corrupt.png", "a_folder.png", "row 4", "empty.png", "6: nan",
                 "'no_such_column'"):
        assert name in message, name


# -- 4. columns that are no model input ---------------------------------------------------
def test_load_cohort_names_identifiers_and_leaks_and_exclude_silences_them(small, tmp_path):
    X, y = small
    n = len(X)
    table = X.assign(record=np.arange(5000, 5000 + n), name=[f"Patient {i}" for i in range(n)],
                     scan_date=[f"2020-01-{i % 28 + 1:02d} 10:{i:02d}" for i in range(n)],
                     total_hip_bmd=y * 1.1 + 0.02, bmd=y)
    table.to_csv(tmp_path / "cohort.csv", index=False)
    with pytest.warns(InputColumnWarning) as caught:
        load_cohort(tmp_path / "cohort.csv", target="bmd")
    message = str(caught[0].message)
    for column in ("'record'", "'name'", "'scan_date'", "'total_hip_bmd'"):
        assert column in message, column
    assert "'age'" not in message and "'sex'" not in message and "image_path" not in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputColumnWarning)
        X2, _ = load_cohort(tmp_path / "cohort.csv", target="bmd",
                            exclude=["record", "name", "scan_date", "total_hip_bmd"])
    assert list(X2.columns) == ["image_path", "age", "sex"]


# -- 11. results and report are replaced whole or not at all -----------------------------
def _results():
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import Ridge

    from bmdkit.evaluation import compare_models

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = 0.85 + 0.1 * X[:, 0] + rng.normal(0, 0.03, 60)
    return compare_models({"ridge": Ridge(), "mean": DummyRegressor()}, X, y, cv=3,
                          baseline="mean", progress=False)


def _fail_midway(monkeypatch, owner, name):
    from pathlib import Path

    def partial(self_or_path, path=None, *args, **kwargs):
        target = path if owner is pd.DataFrame else self_or_path
        Path(target).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(owner, name, partial)


def test_results_and_report_are_written_atomically(tmp_path, monkeypatch):
    from pathlib import Path

    from bmdkit.report import write_report

    results = _results()
    results.save(tmp_path / "results")
    page = write_report(results, tmp_path / "report")
    before = {p.name: p.read_bytes() for p in (tmp_path / "results").iterdir()}
    html = page.read_bytes()
    with monkeypatch.context() as patch:
        _fail_midway(patch, pd.DataFrame, "to_csv")
        with pytest.raises(OSError, match="disk full"):
            results.save(tmp_path / "results")
    with monkeypatch.context() as patch:
        _fail_midway(patch, Path, "write_text")
        with pytest.raises(OSError, match="disk full"):
            write_report(results, tmp_path / "report")
    assert {p.name: p.read_bytes() for p in (tmp_path / "results").iterdir()} == before
    assert page.read_bytes() == html
    assert not [p for p in (tmp_path / "report").iterdir() if p.name.startswith(".")]


def test_predict_uses_the_densitometer_saved_by_fit(tmp_path, capsys):
    from bmdkit.clinical import t_score

    X, y = _metadata(40)
    X.assign(bmd=y).to_csv(tmp_path / "cohort.csv", index=False)
    common = ["--csv", str(tmp_path / "cohort.csv"), "--image-col", "none"]
    cli.main(["fit", *common, "--target", "bmd", "--model", "metadata", "--epochs", "1",
              "--densitometer", "hologic", "--out", str(tmp_path / "model")])
    cli.main(["predict", *common, "--model", str(tmp_path / "model"),
              "--out", str(tmp_path / "pred.csv")])
    pred = pd.read_csv(tmp_path / "pred.csv")
    np.testing.assert_allclose(pred["t_score"], t_score(pred["predicted_bmd"], device="hologic"))


# -- 12. resources ---------------------------------------------------------------------------
def test_a_synthetic_cohort_without_out_dir_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import tempfile

    from bmdkit.datasets import make_synthetic_cohort

    monkeypatch.setenv("BMDKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    X1, y1 = make_synthetic_cohort(n=6, image_size=32, random_state=3)
    X2, y2 = make_synthetic_cohort(n=6, image_size=32, random_state=3)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert X1["image_path"].tolist() == X2["image_path"].tolist()
    np.testing.assert_array_equal(y1, y2)
    assert all(str(tmp_path / "data") in p for p in X1["image_path"])


def _pngs(folder, n, size=16, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"img_{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_decoding_threads_are_shared_and_follow_the_thread_limit(tmp_path, monkeypatch):
    from bmdkit.io import cache

    paths = _pngs(tmp_path, 24)
    threads = set()
    decode = cache.preprocess_image

    def spy(*args):
        threads.add(threading.get_ident())
        return decode(*args)

    monkeypatch.setattr(cache, "preprocess_image", spy)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # what joblib sets in its workers
    cache.cache_clear()
    with ThreadPoolExecutor(4) as pool:  # four fits in threads, each loading images
        list(pool.map(lambda part: cache.load_images(part, image_size=16),
                      [paths[i::4] for i in range(4)]))
    assert len(threads) <= 2


def test_the_image_and_feature_caches_share_one_memory_budget(monkeypatch):
    from bmdkit.io.cache import _MEMORY
    from bmdkit.nn.frozen import _FEATURES

    monkeypatch.setenv("BMDKIT_CACHE_MEMORY_MB", str(10_000 / 2**20))  # 10,000 bytes
    _MEMORY.clear()
    _FEATURES.clear()
    _MEMORY.put("image", np.zeros(1500, np.float32), limit=10_000)  # 6,000 bytes
    _FEATURES.put("features", np.zeros(1500, np.float32), limit=10_000)
    assert _MEMORY.nbytes + _FEATURES.nbytes <= 10_000
    _MEMORY.clear()
    _FEATURES.clear()


def test_the_disk_cache_is_bounded_and_can_key_on_content(tmp_path, monkeypatch):
    import os

    from PIL import Image

    from bmdkit.io import cache

    paths = _pngs(tmp_path, 12, size=40)
    monkeypatch.setenv("BMDKIT_CACHE_DISK_MB", str(3 * (32 * 32 * 4 + 100) / 2**20))
    cache.cache_clear()
    cache.load_images(paths, image_size=32, cache_dir=tmp_path / "cache")
    stored = [p for p in (tmp_path / "cache").rglob("*.bin")]
    assert 0 < len(stored) <= 3
    # a file replaced by one of equal size and modification time (BMP: size fixed by shape)
    monkeypatch.delenv("BMDKIT_CACHE_DISK_MB")
    bmp = str(tmp_path / "hip.bmp")
    Image.fromarray(np.tri(40, dtype=np.uint8) * 200).save(bmp)
    first = cache.load_images([bmp], image_size=32, contrast="none")
    stat = os.stat(bmp)
    Image.fromarray(np.tri(40, dtype=np.uint8).T * 90).save(bmp)
    os.utime(bmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.path.getsize(bmp) == stat.st_size
    stale = cache.load_images([bmp], image_size=32, contrast="none")
    np.testing.assert_array_equal(stale, first)  # the default key cannot tell
    monkeypatch.setenv("BMDKIT_CACHE_KEY", "content")
    fresh = cache.load_images([bmp], image_size=32, contrast="none")
    assert not np.array_equal(fresh, first)
