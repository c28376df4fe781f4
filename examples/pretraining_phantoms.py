"""Does `bmdkit pretrain` help a small labelled cohort? Measured on SYNTHETIC hip phantoms.

Labelled and unlabelled phantoms come from disjoint seeds. Concat or XAttn at
the estimators' defaults (resnet10t, 64 px, 20 epochs), trained from scratch,
fine-tuned from the pretrained weights, frozen on them, and frozen on a random
initialisation (the control), beside the metadata-only network (what
the image adds), on the same folds
(RepeatedBMDStratifiedKFold, 5 folds, 2 repeats), one torch thread per fit.
``--n`` takes the first n of a fixed permutation of the labelled subjects, so
the subsets of a learning curve are nested:

    python examples/pretraining_phantoms.py data --out DIR --labelled 233 --unlabelled 2000
    bmdkit pretrain --csv DIR/unlabelled.csv --out DIR/hips.safetensors --threads 1
    python examples/pretraining_phantoms.py cv --out DIR --n 50 --model concat  # DIR/concat-n50/
    python examples/pretraining_phantoms.py cv --out DIR --n 50 --model xattn
    python examples/pretraining_phantoms.py figure --out DIR --figure curve.png [--labels L ...]

Other weights (another method, more epochs) are a labelled run, paired with
the first on the same folds (its conditions are suffixed by the label):

    bmdkit pretrain --csv DIR/unlabelled.csv --out DIR/simclr.safetensors --method simclr
    python examples/pretraining_phantoms.py cv --out DIR --n 233 --weights DIR/simclr.safetensors \\
        --label simclr --conditions pretrained frozen

The fit seed moves R² as much as pretraining does, so ``seeds`` fine-tunes
several weights files (e.g. of ``bmdkit pretrain --seed 0/1/2``) with several
fit seeds, each paired with scratch of the same fit seed on the same folds,
and reports the fold-wise mean difference over all pairs with its corrected p
(``DIR/<model>-n<N>-seeds/seed<S>/``):

    python examples/pretraining_phantoms.py seeds --out DIR --n 120 --n-jobs 2 \\
        --weights DIR/hips.safetensors DIR/hips_seed1.safetensors DIR/hips_seed2.safetensors

``data --neck-crop 64`` gives each film as a 64-pixel square of a 256 px film
centred on the femoral-neck ROI the phantom knows (an oracle location, where a
real film would need a neck locator): the same subjects and targets, the neck
four times larger.

Fits are stored as they finish (``DIR/<model>-n<N>[-<label>]/fits``): a killed
``cv`` resumes, and a later ``cv`` of the same run adds its conditions to those
already there. Results and discussion: docs/pretraining.md. SYNTHETIC data, not
clinical evidence.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
from phantom_grid import merge

import bmdkit  # noqa: F401  (before torch: bmdkit's OpenMP settings)
from bmdkit.evaluation import ComparisonResults

LABELS = {"concat": "Concat", "xattn": "XAttn"}
CONDITIONS = ("scratch", "pretrained", "frozen", "random-frozen", "metadata-only")
N_SPLITS, N_REPEATS = 5, 2
CROP_FILM_PX = 256  # --neck-crop: the long side of the films the crops are cut from
RUN = re.compile(r"(?P<model>[a-z]+)-n(?P<n>\d+)(-(?P<label>[a-z0-9]+))?")


def make_data(out, n_labelled, n_unlabelled, neck_crop=None):
    """Labelled (seed 0) and unlabelled (seed 1001) hip-view phantoms: 128 px films, or with
    ``neck_crop`` a square of that many pixels of a 256 px film centred on the neck ROI."""
    X, y = hip_phantoms(out / "labelled", n_labelled, seed=0, neck_crop=neck_crop)
    X.assign(fn_bmd=y).to_csv(out / "labelled.csv", index=False)
    U, _ = hip_phantoms(out / "unlabelled", n_unlabelled, seed=1001, neck_crop=neck_crop)
    U[["image_path"]].to_csv(out / "unlabelled.csv", index=False)


def hip_phantoms(folder, n, *, seed, neck_crop=None):
    """X, y of ``n`` hip phantoms of ``seed`` in ``folder``.

    With ``neck_crop``, each film is rendered at :data:`CROP_FILM_PX` (into
    ``<folder><CROP_FILM_PX>``, read back from there) and ``folder`` gets the ``neck_crop``-pixel square centred on
    the phantom's own femoral-neck ROI: an oracle location (a real film would need a
    neck locator); a crop that would leave the film is moved inside it. The subjects
    and y do not depend on ``neck_crop``.
    """
    from PIL import Image

    from bmdkit.datasets import make_synthetic_cohort
    from bmdkit.datasets.films import save_png
    from bmdkit.phantoms import film_shape

    if neck_crop is None:
        return make_synthetic_cohort(n=n, image_size=128, random_state=seed, out_dir=folder,
                                     view="hip")
    rows, cols, _ = film_shape("hip", CROP_FILM_PX)
    if not 0 < neck_crop <= min(rows, cols):
        raise SystemExit(f"--neck-crop {neck_crop}: a crop of the {rows} x {cols} px hip film "
                         f"takes 1 to {min(rows, cols)} pixels")
    X, y, truth = make_synthetic_cohort(n=n, image_size=CROP_FILM_PX, random_state=seed,
                                        out_dir=folder.with_name(f"{folder.name}{CROP_FILM_PX}"),
                                        view="hip", return_truth=True)
    folder.mkdir(exist_ok=True)
    crops = []
    for i, (film_path, corners) in enumerate(zip(X["image_path"], truth["neck_roi"])):
        film = np.asarray(Image.open(film_path))
        centre_x, centre_y = np.mean(np.asarray(corners), axis=0)
        top = int(np.clip(round(centre_y - neck_crop / 2), 0, rows - neck_crop))
        left = int(np.clip(round(centre_x - neck_crop / 2), 0, cols - neck_crop))
        crops.append(str(folder / f"crop_{i:04d}.png"))
        save_png(crops[-1], np.ascontiguousarray(film[top:top + neck_crop,
                                                      left:left + neck_crop]))
    return X.assign(image_path=crops), y


def labelled_subset(out, n=None):
    """The first ``n`` labelled subjects of a fixed permutation (nested over n; None: all),
    as X, y."""
    table = pd.read_csv(out / "labelled.csv")
    n = len(table) if n is None else n
    if not 0 < n <= len(table):
        raise SystemExit(f"--n {n}: {out / 'labelled.csv'} holds {len(table)} subjects")
    table = table.iloc[np.sort(np.random.default_rng(0).permutation(len(table))[:n])]
    return table.drop(columns=["fn_bmd"]).reset_index(drop=True), table["fn_bmd"].to_numpy()


def cross_validate(out, n, model, conditions, weights, n_jobs, label=None):
    """Compare the conditions on the same folds; results in
    ``out/<model>-n<n>[-<label>]/results``."""
    from bmdkit import MetadataOnlyBMDRegressor
    from bmdkit.evaluation import compare_models

    estimator = estimator_class(model)
    default = out / "hips.safetensors"
    if weights is not None and Path(weights) != default and not label:
        raise SystemExit(f"--weights {weights}: other weights than {default} are a labelled "
                         "run (--label NAME), or they would replace the first run's results")
    weights = str(weights or default)
    params = {"scratch": {}, "pretrained": {"pretrained": weights},
              "frozen": {"pretrained": weights, "freeze_backbone": True},
              "random-frozen": {"freeze_backbone": True}}
    X, y = labelled_subset(out, n)
    run = out / (f"{model}-n{len(y)}" + (f"-{label}" if label else ""))
    if (run / "results").is_dir():  # keep the conditions of earlier calls (their fits are stored)
        conditions = dict.fromkeys([*ComparisonResults.load(run / "results").model_names,
                                    *conditions])
    models = {name: (MetadataOnlyBMDRegressor if name == "metadata-only" else estimator)(
        random_state=0, n_threads=1, **params.get(name, {})) for name in conditions}
    results = compare_models(models, X, y, cv=folds(),
                             baseline="scratch" if "scratch" in models else None,
                             n_jobs=n_jobs, checkpoint_dir=run / "fits")
    results.save(run / "results")
    return results


def folds():
    """The ten folds of every condition: 5 folds, 2 repeats, stratified on y."""
    from bmdkit.model_selection import RepeatedBMDStratifiedKFold

    return RepeatedBMDStratifiedKFold(N_SPLITS, n_repeats=N_REPEATS, random_state=0)


def estimator_class(model):
    """The estimator of ``--model``."""
    from bmdkit import ConcatBMDRegressor, XAttnBMDRegressor

    return {"concat": ConcatBMDRegressor, "xattn": XAttnBMDRegressor}[model]


def seed_grid(out, n, model, weights, fit_seeds, n_jobs):
    """Scratch and fine-tuned from each of ``weights``, with each fit seed, on the same
    folds; results in ``out/<model>-n<N>-seeds/seed<S>/results``, fits stored beside them."""
    from bmdkit.evaluation import compare_models

    names = {Path(path).stem: str(path) for path in weights}
    if len(names) < len(weights) or "scratch" in names:
        raise SystemExit(f"--weights {' '.join(map(str, weights))}: give files of distinct "
                         "names other than 'scratch' (the name labels the file's row)")
    estimator = estimator_class(model)
    X, y = labelled_subset(out, n)
    run = out / f"{model}-n{len(y)}-seeds"
    for seed in fit_seeds:
        models = {"scratch": estimator(random_state=seed, n_threads=1),
                  **{name: estimator(pretrained=path, random_state=seed, n_threads=1)
                     for name, path in names.items()}}
        results = compare_models(models, X, y, cv=folds(), baseline="scratch", n_jobs=n_jobs,
                                 checkpoint_dir=run / f"seed{seed}" / "fits")
        results.save(run / f"seed{seed}" / "results")
    return run


def seed_grid_summary(run, fit_seeds):
    """Mean fold R² of each weights file (rows, scratch first) and fit seed (columns), and
    per fold the mean over every pair of a file and a fit seed of its difference from
    scratch of the same fit seed, with that mean's corrected p: ``(grid, differences, p)``.

    The weights files and fit seeds are held fixed: the p does not count the variation
    between pretraining runs beyond those given."""
    from bmdkit.significance import corrected_paired_ttest

    r2, differences = {}, []
    for seed in fit_seeds:
        path = run / f"seed{seed}" / "results"
        if not path.is_dir():
            raise SystemExit(f"{path}: no results of fit seed {seed} (run the seeds step)")
        results = ComparisonResults.load(path)
        if r2 and results.model_names != list(next(iter(r2.values())).index):
            raise SystemExit(f"{path}: other models ({results.model_names}) than the first "
                             f"fit seed's")
        per_fold = results.per_fold("r2")[results.model_names]  # scratch, then the files
        r2[seed] = per_fold.mean()
        differences += [per_fold[name] - per_fold["scratch"] for name in per_fold
                        if name != "scratch"]
    grid = pd.DataFrame(r2)
    mean_difference = pd.concat(differences, axis=1).mean(axis=1)
    return grid, mean_difference, corrected_paired_ttest(mean_difference, *results.fold_sizes())


def summary(out):
    """One row per model, labelled n and condition: mean and sd of the fold R², the paired
    difference from scratch with the corrected resampled t-test, folds better, fit minutes.

    The runs of one model and n (the first and the labelled ones) are merged on their folds.
    """
    runs = {}
    for path in sorted(out.glob("*-n*/results")):
        match = RUN.fullmatch(path.parent.name)
        if match is None:  # another folder of DIR, not a run of this script
            continue
        key = (match["model"], int(match["n"]))
        runs.setdefault(key, []).append((path.parent, match["label"] or ""))
    rows = []
    for (model, n), labelled in sorted(runs.items()):
        results = merge(sorted(labelled, key=lambda run: run[1]))
        r2 = results.per_fold("r2")
        tests = (results.paired_tests("scratch", metrics=["r2"]).set_index("model")
                 if "scratch" in r2 and len(r2.columns) > 1 else None)
        minutes = results.fold_scores.groupby("model")["fit_time"].sum() / 60
        for name in results.model_names:
            diff = r2[name] - r2["scratch"] if tests is not None and name != "scratch" else None
            rows.append(dict(model=model, n=n, condition=name, mean_r2=r2[name].mean(),
                             sd=r2[name].std(ddof=1),
                             minus_scratch=np.nan if diff is None else diff.mean(),
                             p_corrected=np.nan if diff is None
                             else tests.loc[name, "p_corrected"],
                             folds_better=np.nan if diff is None else int((diff > 0).sum()),
                             fit_minutes=minutes[name]))
    return pd.DataFrame(rows).set_index(["model", "n", "condition"])


def figure(out, path, labels=()):
    """Mean fold R² against labelled n, one line per condition, one panel per model.

    The first run's conditions, and those of the labelled runs named in ``labels`` (dashed);
    returns the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary(out).reset_index()
    label_of = table["condition"].str.partition(" ")[2]
    if set(labels) - set(label_of):
        raise SystemExit(f"--labels {sorted(set(labels) - set(label_of))}: no such run in {out}")
    table = table.assign(labelled=label_of != "")[(label_of == "") | label_of.isin(labels)]
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 4), squeeze=False,
                             sharey=True)
    for ax, model in zip(axes[0], models):
        for condition, rows in table[table["model"] == model].groupby("condition", sort=False):
            ax.errorbar(rows["n"], rows["mean_r2"], yerr=rows["sd"] / np.sqrt(N_SPLITS), capsize=3,
                        marker="o", label=condition, ls="--" if rows["labelled"].iloc[0] else "-")
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set_xlabel("labelled subjects")
        ax.set_title(f"{LABELS[model]}: SYNTHETIC hip phantoms, 64 px, 20 epochs\n"
                     f"{N_SPLITS}-fold × {N_REPEATS}; bars: fold sd / √{N_SPLITS}", fontsize=9)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("R² (held-out fold, mean of folds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def run_label(text):
    """``--label``: lower-case letters and digits (it becomes part of a folder name)."""
    if not re.fullmatch("[a-z0-9]+", text):
        raise argparse.ArgumentTypeError(f"{text!r}: use lower-case letters and digits")
    if text == "seeds":
        raise argparse.ArgumentTypeError("'seeds' names the seeds step's folder")
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("data", "cv", "seeds", "figure"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--labelled", type=int, default=233, help="data: labelled subjects")
    parser.add_argument("--unlabelled", type=int, default=2000, help="data: unlabelled films")
    parser.add_argument("--neck-crop", type=int, metavar="PX",
                        help=f"data: keep a PX-pixel square of {CROP_FILM_PX} px films centred on "
                             "the phantom's femoral-neck ROI (an oracle location)")
    parser.add_argument("--n", type=int, help="cv: labelled subjects used (default: all)")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=CONDITIONS)
    parser.add_argument("--model", choices=("concat", "xattn"), default="concat")
    parser.add_argument("--weights", type=Path, nargs="+",
                        help="default: OUT/hips.safetensors; seeds: one or more files")
    parser.add_argument("--fit-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds: the fits' random_state")
    parser.add_argument("--label", type=run_label,
                        help="a run of other --weights, named LABEL (lower case, digits)")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--figure", type=Path, default=Path("pretraining.png"))
    parser.add_argument("--labels", nargs="+", type=run_label, default=[],
                        help="figure: also the conditions of these labelled runs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step == "data":
        make_data(args.out, args.labelled, args.unlabelled, args.neck_crop)
    elif args.step == "cv":
        if args.weights and len(args.weights) > 1:
            raise SystemExit("cv takes one --weights file (a labelled run each)")
        cross_validate(args.out, args.n, args.model, args.conditions,
                       args.weights[0] if args.weights else None, args.n_jobs, args.label)
    elif args.step == "seeds":
        if not args.weights:
            raise SystemExit("seeds: give the weights files to fine-tune (--weights W [W ...])")
        run = seed_grid(args.out, args.n, args.model, args.weights, args.fit_seeds, args.n_jobs)
        grid, differences, p = seed_grid_summary(run, args.fit_seeds)
        print(f"{run.name}: mean fold R² by fit seed (SYNTHETIC)")
        print(grid.round(4).to_string())
        print(f"fine-tuned - scratch over {(len(grid) - 1) * len(grid.columns)} pairs: "
              f"{differences.mean():+.4f} (corrected p {p:.4f}; folds better "
              f"{int((differences > 0).sum())}/{len(differences)})")
    else:
        figure(args.out, args.figure, args.labels)
    if args.step in ("cv", "figure"):
        with pd.option_context("display.width", 200):
            print(summary(args.out).round(4).to_string())


if __name__ == "__main__":
    main()
