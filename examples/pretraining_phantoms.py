"""Does `bmdkit pretrain` help a small labelled cohort? Measured on SYNTHETIC hip phantoms.

Labelled and unlabelled phantoms come from disjoint seeds. Concat at the
estimators' defaults (resnet10t, 64 px, 20 epochs), RepeatedBMDStratifiedKFold
(5 folds, 2 repeats), one torch thread per fit:

    python examples/pretraining_phantoms.py data --out DIR             # DIR/labelled.csv (120), DIR/unlabelled.csv (1500)
    bmdkit pretrain --csv DIR/unlabelled.csv --out DIR/hips.safetensors --threads 1  # --overwrite to redo
    python examples/pretraining_phantoms.py cv --out DIR               # DIR/cv.json: scratch, pretrained, frozen, random-frozen
    python examples/pretraining_phantoms.py cv --out DIR --model xattn
    python examples/pretraining_phantoms.py figure --out DIR --figure docs/img/pretraining.png

Results and discussion: docs/pretraining.md. SYNTHETIC data, not clinical evidence.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score

import bmdkit  # noqa: F401  (before torch: bmdkit's OpenMP settings)

CONDITIONS = ("scratch", "pretrained", "frozen", "random-frozen")


def make_data(out, n_labelled=120, n_unlabelled=1500):
    """Labelled (seed 0) and unlabelled (seed 1001) hip-view phantoms, 128 px films."""
    from bmdkit.datasets import make_synthetic_cohort

    X, y = make_synthetic_cohort(n=n_labelled, image_size=128, random_state=0,
                                 out_dir=out / "labelled", view="hip")
    X.assign(fn_bmd=y).to_csv(out / "labelled.csv", index=False)
    U, _ = make_synthetic_cohort(n=n_unlabelled, image_size=128, random_state=1001,
                                 out_dir=out / "unlabelled", view="hip")
    U[["image_path"]].to_csv(out / "unlabelled.csv", index=False)


def cross_validate(out, conditions=CONDITIONS, weights=None, model="concat"):
    """Per-fold R² of each condition, written to ``out/cv.json`` after each condition.

    Keys: the condition for Concat, ``"xattn/<condition>"`` for XAttn.
    """
    from bmdkit import ConcatBMDRegressor, XAttnBMDRegressor
    from bmdkit.model_selection import RepeatedBMDStratifiedKFold

    estimator = {"concat": ConcatBMDRegressor, "xattn": XAttnBMDRegressor}[model]

    weights = str(weights or out / "hips.safetensors")
    params = {"scratch": {}, "pretrained": {"pretrained": weights},
              "frozen": {"pretrained": weights, "freeze_backbone": True},
              "random-frozen": {"freeze_backbone": True}}  # the control: frozen, not pretrained
    table = pd.read_csv(out / "labelled.csv")
    X, y = table.drop(columns=["fn_bmd"]), table["fn_bmd"].to_numpy()
    folds = list(RepeatedBMDStratifiedKFold(5, n_repeats=2, random_state=0).split(X, y))
    path = out / "cv.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in conditions:
        r2, predictions, start = [], np.zeros((2, len(y))), time.perf_counter()
        for k, (train, test) in enumerate(folds):
            fitted = estimator(random_state=k, n_threads=1, **params[name]).fit(X.iloc[train],
                                                                               y[train])
            predictions[k // 5, test] = fitted.predict(X.iloc[test])
            r2.append(float(r2_score(y[test], predictions[k // 5, test])))
            print(f"{model} {name} fold {k}: R2 {r2[-1]:.4f} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
        results[name if model == "concat" else f"{model}/{name}"] = dict(r2=r2, mean_r2=float(np.mean(r2)), seconds=time.perf_counter() - start,
                             pooled_r2_by_repeat=[float(r2_score(y, p)) for p in predictions])
        path.write_text(json.dumps(results, indent=1))
    return results


def summary(results):
    """One row per condition: mean fold R², its difference from the model's scratch, folds
    better, time."""
    rows = []
    for name, r in results.items():
        r2 = np.array(r["r2"])
        scratch = name.rpartition("/")[0] + "/scratch" if "/" in name else "scratch"
        base = np.array(results[scratch]["r2"]) if scratch in results else None
        diff = r2 - base if base is not None and name != scratch else None
        rows.append(dict(condition=name, mean_r2=r2.mean(), sd=r2.std(ddof=1),
                         minus_scratch=np.nan if diff is None else diff.mean(),
                         folds_better=np.nan if diff is None else int((diff > 0).sum()),
                         cv_minutes=r["seconds"] / 60))
    return pd.DataFrame(rows).set_index("condition")


def figure(out, path):
    """Per-fold R² of each condition (paired lines) and the pretraining loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads((out / "cv.json").read_text())
    panels = [(title, [(n, prefix + n) for n in CONDITIONS if prefix + n in results])
              for title, prefix in (("Concat", ""), ("XAttn", "xattn/"))]
    panels = [(title, names) for title, names in panels if names]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False,
                             sharey=True)
    for ax, (title, names) in zip(axes[0], panels):
        values = np.array([results[key]["r2"] for _, key in names])
        ax.plot(range(len(names)), values, color="0.7", lw=0.8)
        ax.plot(range(len(names)), values.mean(axis=1), "ko-", lw=2, label="mean of 10 folds")
        ax.set_xticks(range(len(names)), [label for label, _ in names])
        ax.set_title(f"{title}: 120 labelled SYNTHETIC hip phantoms\n5-fold × 2, 64 px, "
                     "20 epochs", fontsize=9)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("R² (held-out fold)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(summary(results).round(4).to_string())


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("data", "cv", "figure"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=CONDITIONS)
    parser.add_argument("--model", choices=("concat", "xattn"), default="concat")
    parser.add_argument("--weights", type=Path, help="default: OUT/hips.safetensors")
    parser.add_argument("--figure", type=Path, default=Path("pretraining.png"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step == "data":
        make_data(args.out)
    elif args.step == "cv":
        results = cross_validate(args.out, args.conditions, args.weights, args.model)
        print(summary(results).round(4).to_string())
    else:
        figure(args.out, args.figure)


if __name__ == "__main__":
    main()
