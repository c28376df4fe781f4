"""``bmdkit cv``: compare models on a cohort CSV under stratified K-fold CV.

Also the comparison ``demo`` and ``ablation`` run: :func:`run_comparison`
and its options (:func:`add_cv_options`, :func:`add_report_options`).
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

from bmdkit.cli.common import (
    DEFAULT_MODELS,
    MODELS,
    add_data_options,
    add_densitometer_option,
    add_groups_option,
    add_jobs_option,
    add_model_options,
    add_resume_option,
    discard_unless_resumed,
    make_models,
    model_params,
    n_jobs,
    pop_groups,
    read_data,
    stopped,
)
from bmdkit.registry import BASELINE_FUSION, baseline_label

#: The folder under ``--out`` keeping a comparison's finished fits (``--resume``).
CHECKPOINT = "checkpoint"
#: The folder in :data:`CHECKPOINT` keeping the model the report explains.
EXPLAINED = "explained-model"

#: Columns of the results table that ``demo`` and ``cv`` print.
PRINTED_METRICS = ("mse", "mae", "r2", "pearson_r", "accuracy@T=-1.0", "roc_auc@T=-1.0",
                   "who_accuracy")


def run_comparison(X, y, args, models, *, title, synthetic, description, baseline=None,
                   metrics=PRINTED_METRICS):
    """Cross-validate ``models``, print the table, write results and report; the results.

    What ``cv``, ``demo`` and ``ablation`` run: :func:`bmdkit.evaluation.compare_models`
    on (group-)stratified folds of ``args.folds``, saved to ``args.out``. The report
    explains the headline model (the first that is not the baseline) of the first fold
    on four of its test rows, when it reads images (:func:`bmdkit.explain.explanation_figures`).
    """
    import numpy as np
    import pandas as pd
    from sklearn.base import clone

    from bmdkit import BMDStratifiedGroupKFold, BMDStratifiedKFold
    from bmdkit.checks import ImputationWarning, warn_missing_values
    from bmdkit.estimators import load
    from bmdkit.evaluation import compare_models
    from bmdkit.explain import explanation_figures
    from bmdkit.fit_store import MANIFEST, FitsInterrupted, finished_fits
    from bmdkit.nn import fusion_class
    from bmdkit.report import write_report

    baseline = baseline_label(models) if baseline is None else baseline
    X, groups = pop_groups(X, args)
    splitter = BMDStratifiedKFold if groups is None else BMDStratifiedGroupKFold
    cv = splitter(args.folds, random_state=args.seed)
    warn_missing_values(X, [c for c in X.columns if c != getattr(args, "image_col", "image_path")])
    headline = next((name for name in models if name != baseline), None)
    out = Path(args.out)
    store = out / CHECKPOINT
    if (store / MANIFEST).is_file():
        discard_unless_resumed([store], args, f"{finished_fits(store)} finished fits of an "
                                              "earlier run")
    kept = {}  # the headline model of the first fold, explained in the report

    def keep(name, fold, fitted, test):
        if name == headline and fold == 0 and fusion_class(fitted.fusion).uses_image:
            fitted.save(store / EXPLAINED, overwrite=True)  # for a run that resumes
            kept.update(model=fitted, test=test)

    with warnings.catch_warnings():  # counted once above, not again in every fold
        warnings.simplefilter("ignore", ImputationWarning)
        sites = list(y.columns) if hasattr(y, "columns") else "femoral_neck"  # several sites
        try:
            results = compare_models(models, X, y, cv=cv, groups=groups, baseline=baseline,
                                     site=sites, device=args.densitometer, on_fit=keep,
                                     n_jobs=n_jobs(args), checkpoint_dir=store)
        except FitsInterrupted as stop:
            stopped(args, stop, f"finished fits kept in {store}: {finished_fits(store)}")
        first = results.predictions
        test = np.unique(first.loc[(first["model"] == headline) & (first["fold"] == 0), "row"])
        if not kept and (store / EXPLAINED).is_dir():  # fitted by the run this one resumes
            kept.update(model=load(store / EXPLAINED), test=test)
        elif not kept and len(test) and getattr(models[headline], "fusion", None) and \
                fusion_class(models[headline].fusion).uses_image:
            # that run was killed after the fit was stored, before its model was saved
            print(f"refitting {headline} on its first fold for the report's figures (the run "
                  "this one resumes kept its scores, not its model)", file=sys.stderr)
            train = np.setdiff1d(np.arange(len(X)), test)
            keep(headline, 0, clone(models[headline]).fit(
                X.iloc[train], y.iloc[train] if hasattr(y, "iloc") else np.asarray(y)[train]),
                test)
        extra = explanation_figures(kept["model"], X.iloc[kept["test"]],
                                    np.asarray(y)[kept["test"]], name=headline) if kept else None
    # saved with the results, so that `bmdkit report` draws the same labels
    results = dataclasses.replace(results, title=title, synthetic=synthetic,
                                  description=description)
    results.save(out / "results")
    page = write_report(results, out, title=title, synthetic=synthetic, description=description,
                        headline=headline, extra_figures=extra)
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(results.table(metrics=metrics).to_string())
    print(f"\nreport: {page}\nresults: {out / 'results'}")
    return results


def add_cv_options(parser, *, folds, folds_default=None):
    """``--models``, ``--folds``, ``--groups`` and ``--densitometer`` of a model comparison."""
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(DEFAULT_MODELS),
                        help="models to compare (default: XAttn-BMD's four, "
                             f"{' '.join(DEFAULT_MODELS)}; the baseline of relative changes "
                             f"is {BASELINE_FUSION!r} when included)")
    parser.add_argument("--folds", type=int, default=folds,
                        help=f"stratified folds (default: {folds_default or folds})")
    add_groups_option(parser)
    add_jobs_option(parser)
    add_resume_option(parser)
    add_densitometer_option(parser)


def add_report_options(parser, *, title):
    """``--title`` and ``--synthetic`` of the report a comparison writes."""
    parser.add_argument("--title", default=title, help="report title (default: %(default)s)")
    parser.add_argument("--synthetic", action="store_true",
                        help="label the report as results on synthetic data")


# -- the command -----------------------------------------------------------------------------
def add_parser(subparsers):
    """Register ``bmdkit cv``."""
    parser = subparsers.add_parser(
        "cv", help="compare models on your cohort under stratified K-fold CV",
        description="Cross-validate the chosen models on a cohort CSV with "
                    "BMDStratifiedKFold, print the results table and write "
                    "results/ and an HTML report into --out.")
    add_data_options(parser, several_targets=True)
    add_cv_options(parser, folds=10)
    parser.add_argument("--out", required=True, help="output folder")
    add_report_options(parser, title="bmdkit cross-validation")
    add_model_options(parser)
    parser.set_defaults(func=run_cv)
    return parser


def run_cv(args):
    X, y = read_data(args)
    description = (f"{args.csv.name}: {len(y)} rows, target{'s' if len(args.target) > 1 else ''} "
                   f"{', '.join(map(repr, args.target))}, {args.folds} folds.")
    models = make_models(args.models, model_params(args), args.image_col)
    run_comparison(X, y, args, models, title=args.title, synthetic=args.synthetic,
                   description=description)

