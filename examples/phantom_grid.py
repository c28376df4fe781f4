"""Compare runs of examples/phantom_ablation.py with each other, paired fold by fold.

Each run of ``phantom_ablation.py`` compares models under one setting (input
size, tiles, view). This merges the saved results of several runs on the
SAME subjects and folds, tags each model with its run's label, and prints
the R² with a 95 % t-interval over repeats and, against ``--baseline``, the
change of MSE, MAE and R² with the corrected resampled t-test, so that for
instance input 64 px and 128 px are compared on identical folds. Runs whose
folds hold other rows or other targets are refused; with ``--folds N`` only
the first N folds of each run are used (a run with fewer repeats). SYNTHETIC
data: the figures compare designs, they are not clinical evidence.

Run:  .venv/bin/python examples/phantom_grid.py runs/in64="64 px" runs/in128="128 px" \\
          --baseline "Concat 64 px"
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from phantom_ablation import repeat_intervals

from bmdkit.errors import InputError
from bmdkit.evaluation import ComparisonResults

KEYS = ["fold", "row", "y_true"]


def run_spec(text):
    """``DIR=LABEL`` as (DIR, LABEL); ``DIR`` alone as (DIR, "") (model names kept)."""
    path, _, label = text.partition("=")
    return path, label


def merge(runs, n_folds=None, models=None):
    """One :class:`ComparisonResults` of the runs, model names suffixed by their run's label."""
    scores, predictions, reference = [], [], None
    for path, label in runs:
        results = ComparisonResults.load(f"{path}/results")
        suffix = f" {label}" if label else ""
        frames = []
        for frame in (results.fold_scores, results.predictions):
            keep = frame["fold"] < (n_folds if n_folds is not None else np.inf)
            if models is not None:
                keep &= frame["model"].isin(models)
            frames.append(frame[keep].assign(model=frame["model"][keep] + suffix))
        rows = frames[1][KEYS].drop_duplicates().sort_values(KEYS).reset_index(drop=True)
        if reference is None:
            reference = (path, rows, results)
        elif not rows.round(12).equals(reference[1].round(12)):
            raise InputError(f"{path} holds other folds or targets than {reference[0]}: "
                             "runs can only be compared on the same subjects and folds")
        scores.append(frames[0])
        predictions.append(frames[1])
    first = reference[2]
    return ComparisonResults(
        fold_scores=pd.concat(scores, ignore_index=True),
        predictions=pd.concat(predictions, ignore_index=True),
        thresholds=first.thresholds, clinical=first.clinical, synthetic=True)


def low_tail_mae(results, fraction=0.2):
    """Per model: MAE of the pooled out-of-fold predictions of the subjects whose target is
    in the lowest ``fraction`` (the low-BMD tail a weighted loss is for)."""
    predictions = results.predictions
    low = predictions["y_true"] <= predictions["y_true"].quantile(fraction)
    error = (predictions["y_pred"] - predictions["y_true"]).abs()
    return error[low].groupby(predictions["model"][low]).mean().rename(
        f"MAE, lowest {fraction:.0%}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=run_spec, metavar="DIR[=LABEL]")
    parser.add_argument("--baseline", required=True, help="a model name with its run's label")
    parser.add_argument("--models", nargs="+", help="only these models of each run")
    parser.add_argument("--folds", type=int, help="only the first FOLDS folds of each run")
    parser.add_argument("--n-splits", type=int, default=5, help="folds per repeat")
    args = parser.parse_args(argv)

    results = merge(args.runs, args.folds, args.models)
    change = results.relative_change(args.baseline)[["mse", "mae", "r2"]].round(1)
    tests = results.paired_tests(args.baseline, metrics=["mse", "mae", "r2"])
    p = tests.pivot(index="model", columns="metric", values="p_corrected").round(3)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        folds = results.fold_scores.groupby("model")
        means = folds[["mse", "mae"]].mean().join(folds["r2"].std().rename("r2 sd over folds"))
        print(means.join(repeat_intervals(results, args.n_splits))
              .join(low_tail_mae(results)).reindex(results.model_names).round(4))
        print(f"\nchange against {args.baseline} (%), and corrected p:")
        print(change.join(p.add_suffix(" p")))


if __name__ == "__main__":
    main()
