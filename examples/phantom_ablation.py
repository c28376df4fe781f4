"""Re-measure modelling choices on the SYNTHETIC physics phantoms, with two oracles.

Cross-validates fusions (``BMDRegressor(fusion=...)``) on identical
``RepeatedBMDStratifiedKFold`` folds of a demo cohort (``view="hip"`` or
``"pelvis"``), and beside them two oracles computed from the cohort's truth:

- ``oracle: metadata ridge``: a ridge on the metadata columns alone, on the
  same folds (what the metadata can explain);
- ``oracle: noiseless target``: the noiseless femoral-neck BMD of the phantom
  used as the prediction (the ceiling left by DXA's precision error).

Prints the table (mean ± SD over folds), XAttn vs Concat beside the paper
(corrected resampled t-test over all folds) and each model's per-repeat mean
R² with a 95 % t-interval over repeats. Fits are stored under ``--out`` as
they finish (``compare_models(checkpoint_dir=)``): a killed run continues
where it stopped. SYNTHETIC data: the figures compare designs, they are not
clinical evidence.

Run:  .venv/bin/python examples/phantom_ablation.py --view hip --input-size 64 --out runs/hip64
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from phantom_checks import ridge
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin

from bmdkit import BMDRegressor
from bmdkit.datasets import load_demo_cohort
from bmdkit.evaluation import PAPER_MODEL, compare_models, paper_comparison
from bmdkit.model_selection import RepeatedBMDStratifiedKFold
from bmdkit.registry import FUSIONS, LOSSES, baseline_label, model_label


def model_spec(text):
    """``"fusion"`` or ``"fusion:loss"`` as (fusion, loss or None), both checked against the registry."""
    fusion, _, loss = text.partition(":")
    if fusion not in FUSIONS or (loss and loss not in LOSSES):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a fusion of {list(FUSIONS.names())}, optionally ':' and a loss of "
            f"{list(LOSSES.names())}")
    return fusion, loss or None


def metadata_ridge(X):
    """A ridge on the metadata columns (one-hot categorical, imputed), ignoring the image."""
    return ridge(X.drop(columns="image_path"), drop=None)


class NoiselessTarget(RegressorMixin, BaseEstimator):
    """Predicts each row's noiseless BMD, looked up by its image path (an oracle, not a model)."""

    def __init__(self, truth=None):
        self.truth = truth

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.truth.loc[X["image_path"]].to_numpy()


def repeat_intervals(results, n_splits, metric="r2"):
    """Per model: mean over folds of each repeat, and a 95 % t-interval over repeats."""
    per_fold = results.per_fold(metric)
    repeat = per_fold.index.to_numpy() // n_splits
    means = per_fold.groupby(repeat).mean()
    half = stats.t.ppf(0.975, len(means) - 1) * means.std(ddof=1) / np.sqrt(len(means))
    return pd.DataFrame({f"{metric} mean": means.mean(), "95 % CI ±": half,
                         "per repeat": means.T.round(3).apply(list, axis=1)})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--view", choices=["hip", "pelvis"], default="hip")
    parser.add_argument("--film-size", type=int, default=128, help="long side of the films")
    parser.add_argument("--input-size", type=int, default=64, help="network input size")
    parser.add_argument("--models", nargs="+", type=model_spec, metavar="FUSION[:LOSS]",
                        default=["xattn", "concat", "image", "metadata"],
                        help=f"fusions ({', '.join(FUSIONS.names())}), each with --loss "
                             "unless named after a colon, e.g. xattn:weighted_smooth_l1")
    parser.add_argument("--loss", choices=LOSSES.names(), default="smooth_l1")
    parser.add_argument("--tiles", type=int, nargs=2, default=(1, 1), metavar=("ROWS", "COLS"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--freeze-backbone", action="store_true",
                        help="train only what follows the image backbone (kept as initialised)")
    parser.add_argument("--seed", type=int, default=0, help="the networks' random_state")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=233)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    X, y, truth = load_demo_cohort(n=args.n, image_size=args.film_size, view=args.view,
                                   return_truth=True)
    noiseless = pd.Series(truth["femoral_neck_bmd"].to_numpy(), index=X["image_path"])
    settings = dict(image_size=args.input_size, max_epochs=args.epochs,
                    image_tiles=tuple(args.tiles), freeze_backbone=args.freeze_backbone,
                    random_state=args.seed, n_threads=1)
    models = {}
    for fusion, loss in args.models:
        loss = loss or args.loss
        label = model_label(fusion, loss)
        models[label] = BMDRegressor(fusion=fusion, loss=loss, **settings)
    models["oracle: metadata ridge"] = metadata_ridge(X)
    models["oracle: noiseless target"] = NoiselessTarget(noiseless)
    cv = RepeatedBMDStratifiedKFold(args.folds, n_repeats=args.repeats, random_state=0)
    baseline = baseline_label(models)
    results = compare_models(models, X, y, cv=cv, baseline=baseline, n_jobs=args.n_jobs,
                             checkpoint_dir=Path(args.out) / "fits")
    results.save(Path(args.out) / "results")
    print(f"SYNTHETIC phantoms v2, view={args.view}, film {args.film_size} px, input "
          f"{args.input_size} px, tiles {tuple(args.tiles)}, {args.epochs} epochs, "
          f"{'frozen backbone, ' if args.freeze_backbone else ''}seed {args.seed}, "
          f"{args.repeats} x {args.folds} folds, n={args.n}")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(results.table())
        print(repeat_intervals(results, args.folds))
        if baseline and model_label(PAPER_MODEL) in models:
            print(paper_comparison(results))


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
