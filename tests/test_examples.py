"""The README's claims that rest on examples/ hold."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore")
def test_metadata_only_matches_ridge_on_the_real_bone_quality_table(real_data):
    example = load_example("bonequality_metadata_vs_ridge")
    X, y = example.load_bone_quality(real_data / "tabular" / "BoneQuality.csv")
    assert len(y) == 969 and list(X.columns) == ["sex", "age", "height_cm", "weight_kg", "bmi"]
    table = example.compare(X, y)
    ridge, network = table["r2_mean"]
    assert 0.30 < ridge < 0.38
    # 0.3361 vs 0.3359 on the development machine; allow for BLAS rounding elsewhere.
    assert network >= ridge - 0.005, table


@pytest.mark.filterwarnings("ignore")
def test_weighted_loss_helps_the_lowest_bmd_fifth_without_wrecking_r2(real_data):
    """Issue 10's targets on the real BoneQuality table, defaults of the weighted loss."""
    example = load_example("bonequality_weighted_loss")
    X, y = example.load_bone_quality(real_data / "tabular" / "BoneQuality.csv")
    table = example.compare(X, y)
    weighted = table.loc["weighted_smooth_l1"]
    assert weighted["r2"] >= 0.30, table  # ridge: 0.336; unbounded inverse density: -0.21
    assert weighted["lowest_fifth_change_%"] <= -5.0, table


@pytest.mark.filterwarnings("ignore")
def test_one_network_for_three_sites_matches_ridge_per_site_on_bone_quality(real_data):
    example = load_example("bonequality_metadata_vs_ridge")
    X, Y = example.load_bone_quality(real_data / "tabular" / "BoneQuality.csv", sites=True)
    assert list(Y.columns) == ["femoral_neck", "total_hip", "lumbar_spine"]
    # batch_size=64: a quarter of the default's steps, for test time (~30 s of CPU).
    table = example.compare_sites(X, Y, batch_size=64)
    r2 = table.xs("r2", level="metric")
    ridge, network = r2["ridge (per site)"], r2["MetadataOnlyBMDRegressor (3 outputs)"]
    assert ridge.between(0.2, 0.5).all(), table
    # Development machine: 0.3308 vs 0.3364, 0.4524 vs 0.4502, 0.2604 vs 0.2409.
    assert (network >= ridge - 0.01).all(), table


def _saved_run(path, y_true, y_pred, model="Concat"):
    """A results folder as examples/phantom_ablation.py saves it: two folds, one model, or
    one per key when ``y_pred`` is a dict of model name to predictions."""
    from bmdkit.evaluation import ComparisonResults

    folds = [0] * (len(y_true) // 2) + [1] * (len(y_true) - len(y_true) // 2)
    predictions = pd.concat(
        pd.DataFrame({"model": name, "fold": folds, "row": range(len(y_true)),
                      "y_true": y_true, "y_pred": pred})
        for name, pred in (y_pred if isinstance(y_pred, dict) else {model: y_pred}).items())
    scores = predictions.groupby(["model", "fold"], sort=False).apply(
        lambda part: pd.Series({"mse": ((part.y_pred - part.y_true) ** 2).mean(),
                                "mae": (part.y_pred - part.y_true).abs().mean(),
                                "r2": 1 - ((part.y_pred - part.y_true) ** 2).sum()
                                / ((part.y_true - part.y_true.mean()) ** 2).sum()}),
        include_groups=False).reset_index()
    scores = scores.assign(n_train=10, n_test=len(y_true) // 2, fit_time=60.0)
    ComparisonResults(fold_scores=scores, predictions=predictions, thresholds={},
                      synthetic=True).save(path / "results")
    return path


def test_phantom_grid_pairs_runs_on_the_same_folds_and_refuses_others(tmp_path, monkeypatch):
    from bmdkit.errors import InputError

    monkeypatch.syspath_prepend(str(EXAMPLES))
    grid = load_example("phantom_grid")
    rng = np.random.default_rng(0)
    y = rng.normal(0.8, 0.1, 20)
    small = _saved_run(tmp_path / "64", y, y + rng.normal(0, 0.08, 20))
    large = _saved_run(tmp_path / "128", y, y + rng.normal(0, 0.02, 20))
    merged = grid.merge([(small, "64 px"), (large, "128 px")])
    assert merged.model_names == ["Concat 64 px", "Concat 128 px"]
    change = merged.relative_change("Concat 64 px").loc["Concat 128 px"]
    assert change["mse"] < -50  # the closer predictions of the second run
    other = _saved_run(tmp_path / "other", y[::-1], y[::-1])
    with pytest.raises(InputError, match="other folds or targets"):
        grid.merge([(small, "a"), (other, "b")])


@pytest.mark.filterwarnings("ignore")
def test_pretraining_learning_curve_pairs_conditions_with_scratch_on_nested_subsets(
        tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    curve = load_example("pretraining_phantoms")
    pd.DataFrame({"image_path": [f"{i}.png" for i in range(12)], "age": range(12),
                  "fn_bmd": np.linspace(0.6, 0.9, 12)}).to_csv(tmp_path / "labelled.csv",
                                                                index=False)
    small, _ = curve.labelled_subset(tmp_path, 5)
    large, y = curve.labelled_subset(tmp_path, 9)
    assert set(small["image_path"]) < set(large["image_path"]) and len(y) == 9
    assert len(curve.labelled_subset(tmp_path)[1]) == 12
    with pytest.raises(SystemExit, match="holds 12 subjects"):
        curve.labelled_subset(tmp_path, 13)
    with pytest.raises(SystemExit, match="labelled run"):  # would replace the first run's results
        curve.cross_validate(tmp_path, 5, "concat", ["frozen"], tmp_path / "other.safetensors",
                             n_jobs=1)

    rng = np.random.default_rng(0)
    y = rng.normal(0.8, 0.1, 20)
    for n, noise in ((20, 0.08), (40, 0.08)):
        _saved_run(tmp_path / f"concat-n{n}", y, {"scratch": y + rng.normal(0, noise, 20),
                                                  "frozen": y + rng.normal(0, noise / 4, 20)})
    _saved_run(tmp_path / "concat-n20-other", y, {"frozen": y + rng.normal(0, 0.2, 20)})
    table = curve.summary(tmp_path)
    assert list(table.index) == [("concat", 20, "scratch"), ("concat", 20, "frozen"),
                                 ("concat", 20, "frozen other"),
                                 ("concat", 40, "scratch"), ("concat", 40, "frozen")]
    assert table.loc[("concat", 20, "frozen other"), "minus_scratch"] < 0  # paired, same folds
    frozen = table.loc[("concat", 20, "frozen")]
    assert frozen["minus_scratch"] > 0 and frozen["folds_better"] == 2
    assert 0 <= frozen["p_corrected"] <= 1 and frozen["fit_minutes"] == 2.0
    assert np.isnan(table.loc[("concat", 20, "scratch"), "minus_scratch"])
    def drawn(fig):
        import matplotlib.pyplot as plt

        texts = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        plt.close(fig)
        return texts

    assert drawn(curve.figure(tmp_path, tmp_path / "curve.png")) == ["scratch", "frozen"]
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert drawn(curve.figure(tmp_path, tmp_path / "curve.png", labels=["other"])) == [
        "scratch", "frozen", "frozen other"]
    with pytest.raises(SystemExit, match="no such run"):
        curve.figure(tmp_path, tmp_path / "curve.png", labels=["missing"])


def test_pretraining_neck_crop_is_the_square_of_the_film_centred_on_the_neck_roi(
        tmp_path, monkeypatch):
    from numpy.lib.stride_tricks import sliding_window_view
    from PIL import Image

    from bmdkit.datasets import make_synthetic_cohort

    monkeypatch.syspath_prepend(str(EXAMPLES))
    example = load_example("pretraining_phantoms")
    X, y = example.hip_phantoms(tmp_path / "labelled", 3, seed=0, neck_crop=32)
    films, y_films, truth = make_synthetic_cohort(n=3, image_size=256, random_state=0,
                                                  out_dir=tmp_path / "films", view="hip",
                                                  return_truth=True)
    np.testing.assert_array_equal(y, y_films)  # the same subjects
    np.testing.assert_array_equal(y, example.hip_phantoms(tmp_path / "whole", 3, seed=0)[1])
    for crop_path, film_path, corners in zip(X["image_path"], films["image_path"],
                                             truth["neck_roi"]):
        crop = np.asarray(Image.open(crop_path))
        assert crop.shape == (32, 32)
        windows = sliding_window_view(np.asarray(Image.open(film_path)), crop.shape)
        tops, lefts = np.nonzero((windows == crop).all(axis=(2, 3)))
        assert len(tops) == 1, f"{crop_path} found {len(tops)} times in {film_path}"
        centre_x, centre_y = np.mean(np.asarray(corners), axis=0)
        assert abs(tops[0] + 16 - centre_y) <= 0.5 and abs(lefts[0] + 16 - centre_x) <= 0.5
    with pytest.raises(SystemExit, match="--neck-crop 206: .* takes 1 to 205 pixels"):
        example.hip_phantoms(tmp_path / "wide", 1, seed=0, neck_crop=206)


@pytest.mark.filterwarnings("ignore")
def test_pretraining_seed_grid_pairs_each_file_with_scratch_of_its_fit_seed(
        tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    example = load_example("pretraining_phantoms")
    rng = np.random.default_rng(0)
    y = rng.normal(0.8, 0.1, 20)
    run = tmp_path / "concat-n20-seeds"
    for seed, scratch_noise in ((0, 0.02), (1, 0.08), (10, 0.08)):  # seed 0: a good scratch fit
        _saved_run(run / f"seed{seed}", y, {"scratch": y + rng.normal(0, scratch_noise, 20),
                                             "good": y + rng.normal(0, 0.04, 20),
                                             "bad": y + rng.normal(0, 0.2, 20)})
    grid, differences, p = example.seed_grid_summary(run, [0, 1, 10])
    assert list(grid.index) == ["scratch", "good", "bad"] and list(grid.columns) == [0, 1, 10]
    assert grid.loc["scratch", 0] > grid.loc["good", 0] > grid.loc["scratch", 1]
    # each file is judged against scratch of its own fit seed, not against one scratch
    r2 = {seed: example.ComparisonResults.load(run / f"seed{seed}" / "results").per_fold("r2")
          for seed in (0, 1, 10)}
    expected = np.mean([r2[s][name] - r2[s]["scratch"] for s in r2 for name in ("good", "bad")],
                       axis=0)
    np.testing.assert_allclose(differences, expected)
    assert differences.mean() < 0 and 0 <= p <= 1
    assert list(example.seed_grid_summary(run, [10, 1])[0].columns) == [10, 1]
    with pytest.raises(SystemExit, match="no results of fit seed 2"):
        example.seed_grid_summary(run, [0, 2])
    _saved_run(run / "seed3", y, {"scratch": y, "good": y})
    with pytest.raises(SystemExit, match="other models"):
        example.seed_grid_summary(run, [0, 3])
    _saved_run(tmp_path / "concat-n20", y, {"scratch": y + rng.normal(0, 0.08, 20)})
    table = example.summary(tmp_path)  # not the grid's runs; a run of scratch alone
    assert list(table.index) == [("concat", 20, "scratch")]
    assert np.isnan(table["minus_scratch"].iloc[0])
    with pytest.raises(SystemExit, match="distinct names"):
        example.seed_grid(tmp_path, 5, "concat", [tmp_path / "a/w.safetensors",
                                                  tmp_path / "b/w.safetensors"], [0], n_jobs=1)
