"""Conformal intervals (split, CV+), referral, and MAPIE on a bmdkit estimator."""

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, PredefinedSplit, cross_validate

from bmdkit import BMDStratifiedKFold, MetadataOnlyBMDRegressor
from bmdkit.clinical import screening_thresholds, t_score, who_category
from bmdkit.uncertainty import (
    ConformalBMDRegressor,
    conformal_interval,
    conformal_rank,
    interval_metrics,
    load,
    referral_analysis,
)

NOISE = 0.05


def cohort(n, seed):
    """SYNTHETIC metadata cohort: BMD from age and weight plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.uniform(55, 90, n), "weight": rng.normal(70, 12, n)})
    y = 1.4 - 0.008 * X["age"] + 0.003 * X["weight"] + rng.normal(0, NOISE, n)
    return X, y.to_numpy()


def tiny_model():
    return MetadataOnlyBMDRegressor(embed_dim=8, n_heads=2, max_epochs=40, batch_size=64,
                                    random_state=0)


def test_quantile_logic_by_hand():
    """Intervals are the prediction ± the ceil(0.9 (n + 1))-th smallest calibration residual."""
    constant = DummyRegressor(strategy="constant", constant=0.5)
    X = np.zeros((19, 1))
    y = 0.5 + np.arange(1, 20) / 100  # residuals 0.01 ... 0.19
    jackknife = ConformalBMDRegressor(constant, confidence=0.9, cv=KFold(19)).fit(X, y)
    assert conformal_rank(19, 0.9) == 18  # the 18th smallest: 0.18
    np.testing.assert_allclose(jackknife.predict_interval(X[:2]), [[0.32, 0.68]] * 2)
    # too few calibration rows for 96 % (rank 20 of 19): infinite, not a false promise
    assert np.isinf(jackknife.predict_interval(X[:1], confidence=0.96)).all()

    X = np.zeros((40, 1))
    y = 0.5 + np.arange(1, 41) / 1000
    split = ConformalBMDRegressor(constant, method="split", calibration_size=0.5,
                                  random_state=0).fit(X, y)
    rows = split.calibration_rows_
    assert len(rows) == 20 and len(set(rows)) == 20
    np.testing.assert_allclose(split.calibration_scores_, np.abs(y[rows] - 0.5))
    q = np.sort(np.abs(y[rows] - 0.5))[conformal_rank(20, 0.9) - 1]  # the 19th of 20
    np.testing.assert_allclose(split.predict_interval(X[:1]), [[0.5 - q, 0.5 + q]])


def test_cv_plus_matches_the_definition():
    """CV+ bounds equal the order statistics of Barber et al. (2021), computed naively."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    y = X[:, 0] + rng.normal(0, 0.3, 30)
    model = ConformalBMDRegressor(Ridge(), confidence=0.8, cv=5, random_state=0).fit(X, y)
    X_new = rng.normal(size=(4, 2))
    per_model = np.stack([m.predict(X_new) for m in model.estimators_])
    mu = per_model[model.score_model_]  # (n, 4): each row's own left-out model
    r = model.calibration_scores_[:, None]
    n = len(y)
    lower = np.sort(mu - r, axis=0)[int(np.floor(0.2 * (n + 1))) - 1]
    upper = np.sort(mu + r, axis=0)[int(np.ceil(0.8 * (n + 1))) - 1]
    np.testing.assert_allclose(model.predict_interval(X_new), np.column_stack([lower, upper]))
    np.testing.assert_allclose(model.predict(X_new), per_model.mean(axis=0))
    assert sorted(np.bincount(model.score_model_)) == [6] * 5


def test_cv_plus_folds_in_worker_processes_equal_one_process():
    """n_jobs=2 (two joblib processes, through bmdkit.folds.run_folds) changes nothing."""
    X, y = cohort(80, seed=3)
    y = pd.DataFrame({"femoral_neck": y, "total_hip": y + 0.1})  # rows taken by position
    one, two = (ConformalBMDRegressor(Ridge(), cv=4, random_state=0, n_jobs=n_jobs).fit(X, y)
                for n_jobs in (None, 2))
    np.testing.assert_array_equal(two.calibration_scores_, one.calibration_scores_)
    np.testing.assert_array_equal(two.calibration_rows_, one.calibration_rows_)
    np.testing.assert_array_equal(two.predict_interval(X), one.predict_interval(X))
    assert one.calibration_scores_.shape == (80, 2) and len(two.estimators_) == 4


def test_conformal_interval_checks_its_input():
    with pytest.raises(ValueError, match="confidence"):
        conformal_interval([1.0], [0.1, 0.2], 1.5)
    with pytest.raises(ValueError, match="non-negative"):
        conformal_interval([1.0], [-0.1], 0.5)
    with pytest.raises(ValueError, match="method"):
        ConformalBMDRegressor(Ridge(), method="jackknife").fit(np.ones((10, 1)), np.ones(10))


@pytest.mark.parametrize("method", ["cv+", "split"])
def test_held_out_coverage_is_nominal(method):
    """90 % intervals of a bmdkit model cover 90 % ± 5 points of 600 new SYNTHETIC rows."""
    X, y = cohort(1100, seed=0)
    model = ConformalBMDRegressor(tiny_model(), confidence=0.9, method=method, cv=4,
                                  calibration_size=0.5, random_state=0).fit(X[:500], y[:500])
    lower, upper = model.predict_interval(X[500:]).T
    metrics = interval_metrics(y[500:], lower, upper)
    assert abs(metrics["coverage"] - 0.9) <= 0.05, metrics
    # informative too: 90 % of N(0, 0.05) needs ±0.082; allow for the fitted model's error
    assert metrics["interval_width"] < 2 * 1.645 * NOISE * 1.4, metrics


def test_reuses_cross_validate_fits():
    X, y = cohort(120, seed=2)
    cv = BMDStratifiedKFold(4, random_state=0)
    res = cross_validate(Ridge(), X, y, cv=cv, return_estimator=True, return_indices=True)
    reused = ConformalBMDRegressor.from_cross_validate(res, X, y)
    refit = ConformalBMDRegressor(Ridge(), cv=cv).fit(X, y)
    assert reused.estimators_[0] is res["estimator"][0]
    np.testing.assert_allclose(reused.predict_interval(X), refit.predict_interval(X))
    with pytest.raises(ValueError, match="return_indices"):
        ConformalBMDRegressor.from_cross_validate({"estimator": res["estimator"]}, X, y)


def test_referral_frame_save_and_load(tmp_path):
    X, y = cohort(160, seed=3)
    model = ConformalBMDRegressor(tiny_model(), method="cv+", cv=3, random_state=0).fit(X, y)
    frame = model.predict_referral(X.head(20))
    t = t_score(frame["predicted_bmd"].to_numpy())
    np.testing.assert_allclose(frame["t_score"], t)
    assert (frame["t_score_lower"] <= frame["t_score"]).all()
    assert (frame["t_score"] <= frame["t_score_upper"]).all()
    assert (frame["who_category"] == who_category(t)).all()
    thresholds = screening_thresholds()
    crosses = [(lo < v <= hi) for lo, hi in zip(frame["bmd_lower"], frame["bmd_upper"])
               for v in thresholds.values()]
    assert frame["refer"].tolist() == np.array(crosses).reshape(20, 2).any(axis=1).tolist()
    folder = model.save(tmp_path / "conformal")
    loaded = load(folder)
    np.testing.assert_array_equal(loaded.predict_interval(X), model.predict_interval(X))
    with pytest.raises(FileExistsError):
        model.save(folder)
    with pytest.raises(FileNotFoundError, match="conformal"):
        load(tmp_path)


def test_referral_analysis_counts():
    y_true = np.array([0.65, 0.80, 0.88, 0.95, 1.10])
    y_pred = np.array([0.70, 0.90, 0.86, 0.97, 1.00])
    half = np.array([0.02, 0.05, 0.01, 0.01, 0.05])
    table = referral_analysis(y_true, y_pred, np.column_stack([y_pred - half, y_pred + half]),
                              {"T=-1.0": 0.899})
    row = table.loc["T=-1.0"]
    assert row["referred"] == 0.2 and row["n_rest"] == 4  # only 0.90 ± 0.05 crosses 0.899
    assert row["sensitivity_all"] == pytest.approx(2 / 3) and row["sensitivity_rest"] == 1.0
    assert row["specificity_rest"] == row["specificity_all"] == 1.0


def test_mapie_runs_unchanged_and_agrees_on_the_same_folds():
    """MAPIE's own regressors on a bmdkit estimator over a DataFrame, vs bmdkit's intervals."""
    mapie = pytest.importorskip("mapie.regression")
    X, y = cohort(200, seed=4)
    X_train, y_train, X_new = X.iloc[:160], y[:160], X.iloc[160:]
    test_fold = np.empty(len(y_train), dtype=int)
    for k, (_, test) in enumerate(BMDStratifiedKFold(3, random_state=0).split(X_train, y_train)):
        test_fold[test] = k
    folds = PredefinedSplit(test_fold)  # MAPIE and bmdkit see the same folds
    cross = mapie.CrossConformalRegressor(tiny_model(), confidence_level=0.9, method="plus",
                                          cv=folds).fit_conformalize(X_train, y_train)
    points, intervals = cross.predict_interval(X_new)
    ours = ConformalBMDRegressor(tiny_model(), confidence=0.9, cv=folds).fit(X_train, y_train)
    # the fold fits agree to float rounding (MAPIE hands the folds over in its own containers)
    np.testing.assert_allclose(points, ours.predict(X_new), atol=1e-3)
    np.testing.assert_allclose(intervals[:, :, 0], ours.predict_interval(X_new), atol=1e-3)

    ours = ConformalBMDRegressor(tiny_model(), method="split", random_state=0).fit(X_train, y_train)
    split = mapie.SplitConformalRegressor(ours.estimators_[0], confidence_level=0.9, prefit=True)
    rows = ours.calibration_rows_
    points, intervals = split.conformalize(X_train.iloc[rows], y_train[rows]).predict_interval(X_new)
    np.testing.assert_allclose(points, ours.predict(X_new))
    np.testing.assert_allclose(intervals[:, :, 0], ours.predict_interval(X_new), atol=1e-9)
