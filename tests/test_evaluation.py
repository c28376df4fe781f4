import ast
import dataclasses
import json
import os
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge

import bmdkit
from bmdkit import BMDStratifiedKFold, MetadataOnlyBMDRegressor
from bmdkit.checks import ImputationWarning
from bmdkit.evaluation import ComparisonResults, compare_models, corrected_paired_ttest
from bmdkit.metrics import compute_metrics


@pytest.fixture(scope="module")
def metadata_cohort():
    rng = np.random.default_rng(0)
    n = 150
    X = pd.DataFrame({"age": rng.uniform(60, 85, n), "weight": rng.normal(70, 12, n)})
    y = 1.4 - 0.008 * X["age"] + 0.003 * X["weight"] + rng.normal(0, 0.05, n)
    return X, y.to_numpy()


@pytest.fixture(scope="module")
def results(metadata_cohort):
    X, y = metadata_cohort
    models = {"ridge": Ridge(), "strong_ridge": Ridge(alpha=3000.0), "mean": DummyRegressor()}
    return compare_models(models, X, y, cv=BMDStratifiedKFold(5, random_state=0),
                          baseline="mean", progress=False)


def test_identical_folds_and_out_of_fold_predictions(results, metadata_cohort):
    X, y = metadata_cohort
    pred = results.predictions
    folds = pred.pivot(index="row", columns="model", values="fold")
    assert (folds.nunique(axis=1) == 1).all()  # each row in the same fold for every model
    assert sorted(pred.loc[pred.model == "ridge", "row"]) == list(range(len(y)))
    expected = [t.tolist() for _, t in BMDStratifiedKFold(5, random_state=0).split(X, y)]
    got = [sorted(g["row"]) for _, g in pred[pred.model == "ridge"].groupby("fold")]
    assert got == [sorted(t) for t in expected]
    # an out-of-fold prediction is the prediction of a model fit without that row
    train = np.setdiff1d(np.arange(len(y)), expected[0])
    ridge = Ridge().fit(X.iloc[train], y[train])
    fold0 = pred[(pred.model == "ridge") & (pred.fold == 0)].sort_values("row")
    np.testing.assert_allclose(fold0["y_pred"], ridge.predict(X.iloc[sorted(expected[0])]))


def test_fold_scores_summary_and_change(results):
    scores = results.fold_scores
    assert len(scores) == 15 and set(scores["model"]) == {"ridge", "strong_ridge", "mean"}
    ridge = scores[scores.model == "ridge"]
    part = results.predictions.query("model == 'ridge' and fold == 2")
    assert ridge.loc[ridge.fold == 2, "mse"].item() == pytest.approx(
        compute_metrics(part.y_true, part.y_pred)["mse"])
    summary = results.summary()
    assert summary.loc["ridge", ("mse", "mean")] == pytest.approx(ridge["mse"].mean())
    assert summary.loc["ridge", ("mse", "sd")] == pytest.approx(ridge["mse"].std(ddof=1))
    change = results.relative_change()
    base = scores[scores.model == "mean"]
    assert change.loc["ridge", "mse"] == pytest.approx(
        100 * (ridge["mse"].mean() - base["mse"].mean()) / base["mse"].mean())
    assert change.loc["ridge", "mse"] < -30 and "mean" not in change.index
    table = results.table()
    assert table.loc["mean", "Δ mse %"] == "baseline"
    assert table.loc["ridge", "mse"].count("±") == 1


def test_paired_tests_match_scipy(results):
    tests = results.paired_tests().set_index(["model", "metric"])
    per_fold = results.fold_scores.pivot(index="fold", columns="model", values="mae")
    a, b = per_fold["strong_ridge"], per_fold["mean"]
    row = tests.loc[("strong_ridge", "mae")]
    assert row["p_ttest"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert row["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert row["mean_difference"] == pytest.approx((a - b).mean())
    assert row["p_corrected"] >= row["p_ttest"]  # the correction is conservative


def test_table_quotes_the_corrected_p_of_paired_tests(results):
    tests = results.paired_tests().set_index(["model", "metric"])
    table = results.table()
    for model in ("ridge", "strong_ridge"):
        for metric in ("mse", "mae", "r2"):
            assert table.loc[model, f"p {metric}"] == f"{tests.loc[(model, metric), 'p_corrected']:.3f}"
    some = results.paired_tests(metrics=["r2", "mse"])
    everything = results.paired_tests()
    expected = everything[everything["metric"].isin(["r2", "mse"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(some, expected)  # metric_names order, same values
    pd.testing.assert_frame_equal(results.per_fold("mae"), results.fold_scores.pivot(
        index="fold", columns="model", values="mae"))


def test_intervals_are_calibrated_on_other_folds_only(results):
    pred = results.predictions.query("model == 'ridge'")
    assert results.confidence == 0.9
    fold0 = pred[pred.fold == 0]
    others = pred[pred.fold != 0]
    scores = np.sort(np.abs(others.y_true - others.y_pred))
    q = scores[int(np.ceil(0.9 * (len(scores) + 1))) - 1]
    np.testing.assert_allclose(fold0.y_lower, fold0.y_pred - q)
    np.testing.assert_allclose(fold0.y_upper, fold0.y_pred + q)
    scores = results.fold_scores.set_index(["model", "fold"])
    inside = (fold0.y_lower <= fold0.y_true) & (fold0.y_true <= fold0.y_upper)
    assert scores.loc[("ridge", 0), "coverage"] == pytest.approx(inside.mean())
    assert scores.loc[("ridge", 0), "interval_width"] == pytest.approx(2 * q)
    pooled = results.pooled_metrics()
    assert abs(pooled.loc["ridge", "coverage"] - 0.9) < 0.06  # 150 SYNTHETIC rows
    assert pooled.loc["ridge", "interval_width"] < pooled.loc["mean", "interval_width"]


def test_bootstrap_intervals(results):
    from bmdkit.evaluation import SUMMARY_METRICS
    from bmdkit.significance import _resampled_metric

    ci = results.bootstrap_intervals(n_boot=300)
    pooled = results.pooled_metrics()
    for model in results.model_names:
        part = results.predictions[results.predictions.model == model]
        columns = [part[c].to_numpy() for c in ("y_true", "y_pred", "y_lower", "y_upper")]
        for metric in SUMMARY_METRICS:
            # the weighted form with every weight 1 is the metric itself
            with np.errstate(invalid="ignore"):  # a class absent below T = -2.5: NaN
                once = _resampled_metric(metric, results.thresholds)(np.ones((1, len(part))),
                                                                    *columns)
            assert once[0] == pytest.approx(pooled.loc[model, metric], nan_ok=True), metric
            assert ci.loc[model, (metric, "estimate")] == pytest.approx(
                pooled.loc[model, metric], nan_ok=True)
    r2 = ci.loc["ridge", "r2"]
    assert r2["low"] < r2["estimate"] < r2["high"] and r2["high"] - r2["low"] < 0.3
    assert ci.loc["mean", ("r2", "high")] < ci.loc["ridge", ("r2", "low")]
    assert results.headline_test("ridge").startswith("ridge significantly beat the baseline mean")


def test_without_intervals(metadata_cohort):
    X, y = metadata_cohort
    res = compare_models([Ridge()], X, y, cv=3, confidence=None, progress=False)
    assert "y_lower" not in res.predictions and "coverage" not in res.metric_names


def test_corrected_ttest_by_hand():
    d = np.array([0.02, 0.05, -0.01, 0.04, 0.03])
    t = d.mean() / np.sqrt((1 / 5 + 20 / 80) * d.var(ddof=1))
    assert corrected_paired_ttest(d, 80, 20) == pytest.approx(2 * stats.t.sf(abs(t), 4))


def test_save_load_round_trip(results, tmp_path):
    loaded = ComparisonResults.load(results.save(tmp_path / "res"))
    pd.testing.assert_frame_equal(loaded.table(), results.table())
    assert loaded.thresholds == results.thresholds and loaded.baseline == "mean"
    assert loaded.confidence == 0.9 and "y_upper" in loaded.predictions
    assert (loaded.synthetic, loaded.title, loaded.description) == (False, None, None)
    with pytest.raises(FileNotFoundError, match="results"):
        ComparisonResults.load(tmp_path)


def test_report_labels_are_saved_and_older_results_still_load(results, tmp_path):
    labelled = dataclasses.replace(results, synthetic=True, title="demo", description="233 rows")
    loaded = ComparisonResults.load(labelled.save(tmp_path / "res"))
    assert (loaded.synthetic, loaded.title, loaded.description) == (True, "demo", "233 rows")
    meta = json.loads((tmp_path / "res" / "results.json").read_text())
    for key in ("synthetic", "title", "description", "confidence"):  # as written before
        del meta[key]
    (tmp_path / "res" / "results.json").write_text(json.dumps(meta))
    old = ComparisonResults.load(tmp_path / "res")
    assert (old.synthetic, old.title, old.description, old.confidence) == (False, None, None, None)
    pd.testing.assert_frame_equal(old.table(), results.table())


def test_thresholds_none_and_empty(metadata_cohort):
    X, y = metadata_cohort
    default = compare_models([Ridge()], X, y, cv=3, progress=False)
    assert default.thresholds == bmdkit.clinical.screening_thresholds()
    assert "roc_auc@T=-1.0" in default.metric_names
    hologic = compare_models([Ridge()], X, y, cv=3, device="hologic", progress=False)
    assert hologic.thresholds == bmdkit.clinical.screening_thresholds(device="hologic")
    none = compare_models([Ridge()], X, y, cv=3, thresholds={}, progress=False)
    assert none.thresholds == {} and not any("@" in m for m in none.metric_names)
    assert "who_accuracy" in none.metric_names


def test_the_baseline_and_fold_sizes_the_significance_tests_read(results):
    assert results.resolve_baseline() == "mean" and results.resolve_baseline("ridge") == "ridge"
    with pytest.raises(ValueError, match="baseline 'nope' is not one of"):
        results.resolve_baseline("nope")
    assert results.fold_sizes() == (120, 30)  # 150 rows, 5 folds


def test_bad_baseline(metadata_cohort):
    X, y = metadata_cohort
    with pytest.raises(ValueError, match="baseline"):
        compare_models([Ridge()], X, y, baseline="nope", progress=False)


def test_with_a_bmdkit_model(metadata_cohort, capsys):
    X, y = metadata_cohort
    tiny = MetadataOnlyBMDRegressor(embed_dim=8, n_heads=2, max_epochs=20, batch_size=32,
                                    random_state=0)
    res = compare_models([tiny, DummyRegressor()], X, y, cv=3,
                         baseline="DummyRegressor")
    assert res.model_names == ["MetadataOnlyBMDRegressor", "DummyRegressor"]
    assert res.relative_change().loc["MetadataOnlyBMDRegressor", "mse"] < 0
    assert "cross-validation" in capsys.readouterr().err  # the progress bar


def test_evaluation_code_never_imports_torch():
    root = Path(bmdkit.__file__).parent
    for name in ("evaluation", "folds", "metrics", "clinical", "model_selection", "report",
                 "uncertainty"):
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                assert not any(m.split(".")[0] in ("torch", "skorch", "timm") for m in modules)
                assert not any(m.startswith("bmdkit.nn") or m == "bmdkit.estimators"
                               for m in modules), name


def test_ablation_preset_and_the_paper_comparison(metadata_cohort):
    from bmdkit.estimators import ablation_models
    from bmdkit.evaluation import paper_comparison

    X, y = metadata_cohort
    models = ablation_models(["metadata"], ["smooth_l1", "weighted_smooth_l1"], max_epochs=3,
                             random_state=0)
    assert list(models) == ["Metadata-only", "Metadata-only +wSL1"]
    assert models["Metadata-only +wSL1"].loss == "weighted_smooth_l1"
    res = compare_models(models, X, y, cv=3, baseline="Metadata-only", progress=False)
    table = paper_comparison(res, "Metadata-only +wSL1", "Metadata-only")
    assert table.loc["mse", "paper %"] == -16.7
    expected = res.relative_change("Metadata-only").loc["Metadata-only +wSL1", "r2"]
    assert table.loc["r2", "ours %"] == pytest.approx(expected, abs=0.01)
    assert 0 <= table.loc["r2", "p (corrected)"] <= 1


def test_the_paper_comparison_is_of_the_papers_model_by_default(results):
    from bmdkit.evaluation import PAPER_MODEL, paper_comparison
    from bmdkit.registry import model_label

    renamed = dataclasses.replace(results, fold_scores=results.fold_scores.replace(
        {"model": {"ridge": model_label(PAPER_MODEL)}}))
    table = paper_comparison(renamed, baseline="mean")
    assert table.index.name == "XAttn vs mean"
    pd.testing.assert_frame_equal(table, paper_comparison(results, "ridge", "mean"),
                                  check_names=False)


class TorchThreadCount(DummyRegressor):
    """Predicts the number of torch threads its fit ran with."""

    def fit(self, X, y):
        import torch

        self.threads_ = torch.get_num_threads()
        return super().fit(X, y)

    def predict(self, X):
        return np.full(len(X), float(self.threads_))


def test_n_jobs_2_gives_the_results_of_n_jobs_1(metadata_cohort):
    X, y = metadata_cohort
    models = {"metadata": MetadataOnlyBMDRegressor(embed_dim=16, max_epochs=2, batch_size=32,
                                                   random_state=0),
              "ridge": Ridge()}
    kwargs = dict(cv=BMDStratifiedKFold(2, random_state=0), baseline="ridge", progress=False)
    serial = compare_models(models, X, y, n_jobs=1, **kwargs)
    parallel = compare_models({**models, "threads": TorchThreadCount()}, X, y, n_jobs=2,
                              **kwargs)
    same = parallel.predictions["model"].isin(models)
    pd.testing.assert_frame_equal(parallel.predictions[same].reset_index(drop=True),
                                  serial.predictions)
    scores = parallel.fold_scores[parallel.fold_scores["model"].isin(models)]
    pd.testing.assert_frame_equal(scores.drop(columns="fit_time").reset_index(drop=True),
                                  serial.fold_scores.drop(columns="fit_time"))
    # each worker process ran torch with cpu_count() // n_jobs threads (joblib's default)
    threads = parallel.predictions.loc[~same, "y_pred"]
    expected = os.environ.get("OMP_NUM_THREADS", max(joblib.cpu_count() // 2, 1))
    assert set(threads) == {float(expected)}


class WarnsOnFit(DummyRegressor):
    """Warns once per fit, as bmdkit's preprocessor does about imputed values."""

    def fit(self, X, y):
        warnings.warn("imputed 1 missing metadata value", ImputationWarning, stacklevel=2)
        return super().fit(X, y)


def test_worker_processes_follow_the_callers_warning_filters():
    X, y = np.arange(40.0).reshape(20, 2), np.linspace(0.6, 1.0, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImputationWarning)  # e.g. the CLI's "ignore", made visible
        with pytest.raises(ImputationWarning, match="imputed"):
            compare_models({"warns": WarnsOnFit()}, X, y, cv=2, n_jobs=2, progress=False,
                           thresholds={})
