"""Several BMD sites at once: (n, k) targets, (n, k) predictions, metrics per site."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import DataConversionWarning
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_validate

import bmdkit
from bmdkit import BMDStratifiedKFold, ConcatBMDRegressor, MetadataOnlyBMDRegressor
from bmdkit.checks import InputError
from bmdkit.evaluation import ComparisonResults, compare_models
from bmdkit.metrics import compute_metrics, scorers

SITES = ["femoral_neck", "total_hip", "lumbar_spine"]


def three_sites(n=240, seed=0):
    """Metadata and three correlated sites' BMD (g/cm²) driven by age and sex, with noise."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.uniform(50, 90, n), "sex": rng.choice(["F", "M"], n)})
    base = -0.006 * (X["age"] - 70) + 0.08 * (X["sex"] == "M")
    Y = pd.DataFrame({"femoral_neck": 0.85 + base, "total_hip": 0.82 + 1.2 * base,
                      "lumbar_spine": 0.95 + 0.6 * base})
    return X, Y + rng.normal(0, 0.03, Y.shape)


def test_predicts_each_site_and_1d_y_stays_1d(tmp_path):
    X, Y = three_sites()
    model = MetadataOnlyBMDRegressor(max_epochs=15, random_state=0).fit(X, Y)
    pred = model.predict(X)
    assert pred.shape == (len(X), 3) and pred.dtype == np.float64
    for j, site in enumerate(SITES):
        assert np.corrcoef(pred[:, j], Y[site])[0, 1] > 0.8
    assert model.y_mean_.shape == (3,)
    loaded = bmdkit.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X), pred)
    one = MetadataOnlyBMDRegressor(max_epochs=2, random_state=0).fit(X, Y["femoral_neck"])
    assert one.predict(X).shape == (len(X),) and isinstance(one.y_mean_, float)
    with pytest.warns(DataConversionWarning):
        column = MetadataOnlyBMDRegressor(max_epochs=2, random_state=0).fit(X, Y[["total_hip"]])
    assert column.predict(X).shape == (len(X),)
    e = model.explain(X.head(4), output=2, n_samples=2)
    np.testing.assert_allclose(e.predictions, pred[:4, 2], atol=1e-5)


def test_image_model_predicts_several_sites(signal_cohort):
    X, y = signal_cohort
    Y = np.c_[y, 1.1 * y - 0.05]
    model = ConcatBMDRegressor(backbone="resnet10t", image_size=32, embed_dim=16, max_epochs=1,
                               random_state=0).fit(X, Y)
    assert model.predict(X.head(5)).shape == (5, 2)
    assert model.net_.module_.head.layers[-1].out_features == 2


def test_bad_targets_are_named_by_row_and_site():
    X, Y = three_sites(n=20)
    Y.iloc[3, 2] = np.nan
    with pytest.raises(InputError, match="1 target value missing") as err:
        MetadataOnlyBMDRegressor(max_epochs=1).fit(X, Y)
    assert list(err.value.problems) == ["3, 'lumbar_spine'"]


def test_metrics_and_scorers_per_site():
    X, Y = three_sites()
    truth = Y.to_numpy()
    pred = truth + np.array([0.0, 0.01, -0.02])
    m = compute_metrics(truth, pred, site=SITES)
    assert m["femoral_neck/bias"] == pytest.approx(0.0, abs=1e-12)
    assert m["total_hip/bias"] == pytest.approx(0.01)
    assert m["lumbar_spine/mae"] == pytest.approx(0.02)
    # T-scores need a reference: the lumbar spine has none here, so no screening metrics.
    assert "total_hip/who_accuracy" in m and "lumbar_spine/who_accuracy" not in m
    assert "femoral_neck/sensitivity@T=-1.0" in m and "lumbar_spine/r2" in m
    with pytest.raises(ValueError, match="pass site="):
        compute_metrics(truth, pred)
    numeric = X.assign(sex=(X["sex"] == "M").astype(float))
    res = cross_validate(Ridge(alpha=0.1), numeric, Y, cv=BMDStratifiedKFold(4, random_state=0),
                         scoring=scorers(site=SITES))
    assert res["test_total_hip/r2"].mean() > 0.7
    assert res["test_lumbar_spine/neg_mae"].mean() < 0


def test_stratified_folds_follow_the_first_site():
    _, Y = three_sites()
    cv = BMDStratifiedKFold(5, random_state=0)
    for (a, _), (b, _) in zip(cv.split(Y, Y), cv.split(Y, Y["femoral_neck"])):
        np.testing.assert_array_equal(a, b)


def test_compare_models_scores_every_site(tmp_path):
    X, Y = three_sites()
    numeric = X.assign(sex=(X["sex"] == "M").astype(float))
    results = compare_models({"ridge": Ridge(alpha=0.1), "ridge, strong": Ridge(alpha=1000.0)},
                             numeric, Y, cv=4, site=SITES, baseline="ridge, strong", progress=False)
    assert results.sites == SITES
    assert {"femoral_neck/r2", "lumbar_spine/mae", "total_hip/roc_auc@T=-1.0",
            "lumbar_spine/coverage"} <= set(results.metric_names)  # conformal 90 % per site
    assert results.pooled_metrics()["lumbar_spine/coverage"].between(0.8, 1.0).all()
    assert set(results.predictions["site"]) == set(SITES)
    assert len(results.predictions) == 2 * 3 * len(Y)
    assert results.scored_metrics(["r2", "not_scored"]) == [f"{s}/r2" for s in SITES]
    assert results.for_site("total_hip").scored_metrics(["mae", "r2"]) == ["mae", "r2"]
    pooled = results.pooled_metrics()
    oof = results.predictions.query("model == 'ridge' and site == 'total_hip'").sort_values("row")
    assert pooled.loc["ridge", "total_hip/mae"] == pytest.approx(
        np.mean(np.abs(oof["y_true"] - oof["y_pred"])))
    table = results.table()
    assert {"femoral_neck/r2", "lumbar_spine/r2", "Δ total_hip/mse %"} <= set(table.columns)
    again = ComparisonResults.load(results.save(tmp_path / "res"))
    pd.testing.assert_frame_equal(again.pooled_metrics(), pooled)


def test_conformal_intervals_per_site_and_predict_writes_site_columns(tmp_path, capsys):
    """CV+ calibrates each site on its own residuals; `bmdkit predict` names every column by site."""
    from bmdkit.cli import main
    from bmdkit.uncertainty import ConformalBMDRegressor, conformal_interval, interval_metrics
    from bmdkit.uncertainty import load as load_conformal

    X, Y = three_sites(n=400, seed=1)
    Y = Y[["femoral_neck", "lumbar_spine"]]  # lumbar spine: no T-score reference here
    train, test = slice(0, 300), slice(300, None)
    model = ConformalBMDRegressor(
        MetadataOnlyBMDRegressor(embed_dim=8, n_heads=2, max_epochs=25, batch_size=64,
                                 random_state=0), confidence=0.9, cv=4, random_state=0)
    model.fit(X.iloc[train], Y.iloc[train])
    assert model.sites_ == ["femoral_neck", "lumbar_spine"]
    assert model.calibration_scores_.shape == (300, 2)
    intervals, pred = model.predict_interval(X.iloc[test]), model.predict(X.iloc[test])
    assert intervals.shape == (100, 2, 2) and pred.shape == (100, 2)
    members = model._model_predictions(X.iloc[test])  # (fold models, rows, sites)
    for j, site in enumerate(Y.columns):
        # each site is its own conformal problem: its scores, its fold models' predictions
        np.testing.assert_allclose(intervals[:, j], conformal_interval(
            members[..., j], model.calibration_scores_[:, j], 0.9, model.score_model_))
        coverage = interval_metrics(Y[site].iloc[test], *intervals[:, j].T)["coverage"]
        assert 0.8 <= coverage <= 1.0, (site, coverage)  # 90 % of 100 rows: SE 3 points
    frame = model.predict_referral(X.iloc[test])
    assert {"femoral_neck/bmd_lower", "femoral_neck/t_score_upper", "femoral_neck/refer",
            "lumbar_spine/predicted_bmd", "lumbar_spine/bmd_upper", "refer"} <= set(frame)
    assert not any(c.startswith("lumbar_spine/t_score") for c in frame)
    np.testing.assert_array_equal(frame["refer"], frame["femoral_neck/refer"])

    folder = model.save(tmp_path / "conformal")
    np.testing.assert_allclose(load_conformal(folder).predict_interval(X.iloc[test]), intervals)
    X.assign(femoral_neck=Y["femoral_neck"]).iloc[test].to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "pred.csv"
    main(["predict", "--csv", str(tmp_path / "new.csv"), "--model", str(folder), "--out", str(out),
          "--workers", "0", "--target", "femoral_neck"])
    written = pd.read_csv(out)
    np.testing.assert_allclose(written["lumbar_spine/bmd_lower"], intervals[:, 1, 0])
    np.testing.assert_allclose(written["femoral_neck/predicted_bmd"], pred[:, 0])
    printed = capsys.readouterr().out
    assert "coverage" in printed and "rows referred to DXA" in printed
    plain = MetadataOnlyBMDRegressor(max_epochs=2, random_state=0).fit(X, Y)
    main(["predict", "--csv", str(tmp_path / "new.csv"), "--model",
          str(plain.save(tmp_path / "plain")), "--out", str(tmp_path / "plain.csv"),
          "--workers", "0"])
    assert list(pd.read_csv(tmp_path / "plain.csv").columns[-4:]) == [
        "femoral_neck/predicted_bmd", "femoral_neck/t_score", "femoral_neck/who_category",
        "lumbar_spine/predicted_bmd"]


def test_xattn_default_weighted_loss_fits_several_sites(signal_cohort, tmp_path):
    """XAttn's weighted loss on a 2-site y: one bounded density table per site, in its own scale."""
    from bmdkit import XAttnBMDRegressor

    X, y = signal_cohort
    Y = pd.DataFrame({"femoral_neck": y, "total_hip": 1.2 * y - 0.2})  # another range
    model = XAttnBMDRegressor(backbone="resnet10t", image_size=32, embed_dim=16, n_heads=2,
                              n_layers=1, max_epochs=1, random_state=0).fit(X, Y)
    assert model.loss == "weighted_smooth_l1" and model.sites_ == ["femoral_neck", "total_hip"]
    assert model.predict(X.head(3)).shape == (3, 2)
    weights = model.loss_weights_
    assert weights.bin_edges_.shape == (2, model.lds_bins + 1)
    np.testing.assert_allclose(weights(Y.to_numpy()).mean(axis=0), [1.0, 1.0])
    criterion = model.net_.criterion_
    for j, site in enumerate(Y.columns):  # each table moved to its own site's training scale
        expected = (weights.bin_edges_[j] - Y[site].mean()) / Y[site].std(ddof=0)
        np.testing.assert_allclose(criterion.bin_edges[j].numpy(), expected, rtol=1e-5, atol=1e-5)
    loaded = bmdkit.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.loss_weights_.bin_weights_, weights.bin_weights_)
    np.testing.assert_array_equal(loaded.predict(X.head(3)), model.predict(X.head(3)))
    one = XAttnBMDRegressor(backbone="resnet10t", image_size=32, embed_dim=16, n_heads=2,
                            n_layers=1, max_epochs=1, random_state=0).fit(X, y)
    assert one.loss_weights_.bin_edges_.ndim == 1  # one site: the 1-D table as before


def test_fit_and_cv_take_several_target_columns(tmp_path, capsys):
    from bmdkit.cli import main

    X, Y = three_sites(n=120)
    X.join(Y).to_csv(tmp_path / "cohort.csv", index=False)
    main(["fit", "--csv", str(tmp_path / "cohort.csv"), "--target", "femoral_neck", "total_hip",
          "--drop", "lumbar_spine", "--model", "metadata", "--epochs", "2",
          "--out", str(tmp_path / "model")])
    assert bmdkit.load(tmp_path / "model").sites_ == ["femoral_neck", "total_hip"]
    main(["cv", "--csv", str(tmp_path / "cohort.csv"), "--target", *SITES, "--models", "metadata",
          "--folds", "3", "--epochs", "2", "--out", str(tmp_path / "cv")])
    page = (tmp_path / "cv" / "report.html").read_text()
    assert all(f'id="{site}-summary"' in page for site in SITES)
    assert "lumbar_spine/r2" in capsys.readouterr().out
