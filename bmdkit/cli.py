"""The ``bmdkit`` command: ``demo``, ``cv``, ``fit``, ``predict``, ``report``.

Each subcommand is one ``add_<name>_parser(subparsers)`` function that
registers its options and sets ``func`` to the function running it. The
:data:`COMMANDS` table lists them as ``"module:function"`` strings, imported
only when the command line is built, so another module adds a command with
one line here, e.g. ``("tune", "bmdkit.tuning:add_tune_parser")``. Shared
option groups (:func:`add_model_options`, :func:`add_data_options`) and
their readers (:func:`model_params`, :func:`read_data`) serve every command.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import warnings
from pathlib import Path

__all__ = ["COMMANDS", "add_data_options", "add_model_options", "build_parser", "main",
           "model_params", "read_data"]

#: (command name, "module:function" adding its parser), in ``--help`` order.
COMMANDS = [
    ("demo", "bmdkit.cli:add_demo_parser"),
    ("cv", "bmdkit.cli:add_cv_parser"),
    ("fit", "bmdkit.cli:add_fit_parser"),
    ("predict", "bmdkit.cli:add_predict_parser"),
    ("report", "bmdkit.cli:add_report_parser"),
    ("tune", "bmdkit._tune_cli:add_tune_parser"),
    ("bench", "bmdkit.benchmarks:add_bench_parser"),
]

#: Model choices: CLI name -> (fusion, display name). XAttn-BMD's four models.
MODELS = {
    "xattn": ("xattn", "XAttn"),
    "concat": ("concat", "Concat"),
    "image": ("image", "Image-only"),
    "metadata": ("metadata", "Metadata-only"),
}
BASELINE = "concat"

#: ``bmdkit demo`` settings: (--quick, full).
DEMO_SETTINGS = {
    "folds": (5, 10),
    "epochs": (10, 20),
    "image_size": (64, 64),
    "backbone": ("resnet10t", "resnet10t"),
    "n": (None, None),
}


# -- shared options -----------------------------------------------------------------
def _key_value(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _default(name):
    """Default of a BMDRegressor parameter, for help texts."""
    from bmdkit import BMDRegressor

    return inspect.signature(BMDRegressor).parameters[name].default


def add_model_options(parser):
    """Options setting the estimator's hyperparameters (see :func:`model_params`)."""
    group = parser.add_argument_group("model")
    group.add_argument("--epochs", type=int,
                       help=f"training epochs per fit (default: {_default('max_epochs')})")
    group.add_argument("--image-size", type=int,
                       help="side of the square network input in pixels "
                            f"(default: {_default('image_size')})")
    group.add_argument("--batch-size", type=int,
                       help=f"mini-batch size (default: {_default('batch_size')})")
    group.add_argument("--backbone",
                       help=f"timm backbone name (default: {_default('backbone')})")
    group.add_argument("--device", help='torch device, e.g. "cpu" or "cuda" '
                                        f"(default: {_default('device')})")
    group.add_argument("--seed", type=int, default=0,
                       help="random_state of models and folds (default: %(default)s)")
    group.add_argument("--param", action="append", type=_key_value, default=[],
                       metavar="KEY=VALUE",
                       help="any other BMDRegressor parameter, VALUE parsed as JSON when it "
                            "can be (repeatable), e.g. --param lr=3e-4 --param augment=false")
    return group


def model_params(args):
    """BMDRegressor keyword arguments from :func:`add_model_options` options."""
    params = {"random_state": args.seed}
    for option, name in (("epochs", "max_epochs"), ("image_size", "image_size"),
                         ("batch_size", "batch_size"), ("backbone", "backbone"),
                         ("device", "device")):
        if getattr(args, option) is not None:
            params[name] = getattr(args, option)
    params.update(dict(args.param))
    return params


def add_data_options(parser, *, target_required=True, csv_required=True):
    """Options naming a cohort CSV and its columns (see :func:`read_data`)."""
    group = parser.add_argument_group("data")
    group.add_argument("--csv", required=csv_required, type=Path,
                       help="cohort table (CSV); relative image paths are relative to its folder")
    group.add_argument("--target", required=target_required,
                       help="column of measured femoral neck BMD in g/cm²")
    group.add_argument("--image-col", default="image_path",
                       help="column of radiograph paths (default: %(default)s)")
    group.add_argument("--drop", nargs="*", default=[], metavar="COL",
                       help="columns that are not model inputs (ids, other outcomes)")
    return group


def read_data(args):
    """(X, y) from :func:`add_data_options` options; y is None without ``--target``."""
    import pandas as pd

    frame = pd.read_csv(args.csv, encoding="utf-8-sig")
    missing = [c for c in [args.target, *args.drop] if c and c not in frame.columns]
    if missing:
        raise SystemExit(f"error: columns {missing} not in {args.csv}; it has {list(frame.columns)}")
    y = frame.pop(args.target).to_numpy(dtype=float) if args.target else None
    X = frame.drop(columns=args.drop)
    if args.image_col in X.columns:
        base = args.csv.resolve().parent
        X[args.image_col] = [str(p) if Path(p).is_absolute() else str(base / p)
                             for p in X[args.image_col].astype(str)]
    return X, y


def make_models(names, params, image_col="image_path"):
    """{display name: unfitted BMDRegressor} for CLI model names."""
    from bmdkit import BMDRegressor

    return {MODELS[n][1]: BMDRegressor(fusion=MODELS[n][0], image_col=image_col, **params)
            for n in names}


def _run_comparison(X, y, args, params, *, title, synthetic, description):
    """Cross-validate the chosen models, print the table, write results and report."""
    import pandas as pd

    from bmdkit import BMDStratifiedKFold
    from bmdkit.evaluation import compare_models
    from bmdkit.report import write_report
    from bmdkit.validation import ImputationWarning, warn_missing_values

    models = make_models(args.models, params, getattr(args, "image_col", "image_path"))
    baseline = MODELS[BASELINE][1] if BASELINE in args.models else None
    cv = BMDStratifiedKFold(args.folds, random_state=args.seed)
    warn_missing_values(X, [c for c in X.columns if c != getattr(args, "image_col", "image_path")])
    with warnings.catch_warnings():  # counted once above, not again in every fold
        warnings.simplefilter("ignore", ImputationWarning)
        results = compare_models(models, X, y, cv=cv, baseline=baseline)
    out = Path(args.out)
    results.save(out / "results")
    page = write_report(results, out, title=title, synthetic=synthetic, description=description)
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(results.table(metrics=("mse", "mae", "r2", "pearson_r", "accuracy@T=-1.0",
                                     "roc_auc@T=-1.0", "who_accuracy")).to_string())
    print(f"\nreport: {page}\nresults: {out / 'results'}")
    return results


def _add_cv_options(parser, *, folds):
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="models to compare (default: all four; the baseline of relative "
                             f"changes is {BASELINE!r} when included)")
    parser.add_argument("--folds", type=int, default=folds,
                        help=f"stratified folds (default: {folds or 'see below'})")


def _add_report_options(parser, *, title):
    parser.add_argument("--title", default=title, help="report title (default: %(default)s)")
    parser.add_argument("--synthetic", action="store_true",
                        help="label the report as results on synthetic data")


# -- demo ---------------------------------------------------------------------------
def add_demo_parser(subparsers):
    parser = subparsers.add_parser(
        "demo", help="compare the four models on the synthetic demo cohort",
        description="Cross-validate XAttn, concat, image-only and metadata-only models "
                    "(stratified K-fold) on the synthetic demo cohort, print the results "
                    "table and write an HTML report with figures. Synthetic data: the "
                    "numbers show the pipeline works, not clinical accuracy.",
        epilog="Defaults (--quick / full): " + "; ".join(
            f"{key} {quick} / {full or 'all'}" for key, (quick, full) in DEMO_SETTINGS.items())
        + ". --epochs, --image-size, --backbone, --folds and --n override them.")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller run (5 folds, 10 epochs; under 5 minutes on 2 CPU "
                             "cores) instead of the full demo (10 folds, 20 epochs; under 30)")
    parser.add_argument("--out", default="bmdkit-demo",
                        help="output folder for the report (default: %(default)s)")
    parser.add_argument("--n", type=int, help="cohort size (default: see below)")
    _add_cv_options(parser, folds=None)
    add_model_options(parser)
    parser.set_defaults(func=run_demo)
    return parser


def _demo_cohort(n, seed):
    from bmdkit.datasets import load_demo_cohort

    kwargs = {"random_state": seed}
    if n is not None:
        kwargs["n"] = n
    return load_demo_cohort(**kwargs)


def run_demo(args):
    index = 0 if args.quick else 1
    settings = {k: v[index] for k, v in DEMO_SETTINGS.items()}
    args.folds = args.folds or settings["folds"]
    args.epochs = args.epochs or settings["epochs"]
    args.image_size = args.image_size or settings["image_size"]
    args.backbone = args.backbone or settings["backbone"]
    X, y = _demo_cohort(args.n or settings["n"], args.seed)
    mode = "quick" if args.quick else "full"
    description = (f"bmdkit demo ({mode}): synthetic hip radiographs and metadata, "
                   f"{len(y)} subjects, {args.folds}-fold BMDStratifiedKFold, "
                   f"{args.backbone}, {args.epochs} epochs, {args.image_size} px images.")
    print(description, file=sys.stderr)
    _run_comparison(X, y, args, model_params(args), title="bmdkit demo: XAttn-BMD and baselines",
                    synthetic=True, description=description)


# -- cv -----------------------------------------------------------------------------
def add_cv_parser(subparsers):
    parser = subparsers.add_parser(
        "cv", help="compare models on your cohort under stratified K-fold CV",
        description="Cross-validate the chosen models on a cohort CSV with "
                    "BMDStratifiedKFold, print the results table and write "
                    "results/ and an HTML report into --out.")
    add_data_options(parser)
    _add_cv_options(parser, folds=10)
    parser.add_argument("--out", required=True, help="output folder")
    _add_report_options(parser, title="bmdkit cross-validation")
    add_model_options(parser)
    parser.set_defaults(func=run_cv)
    return parser


def run_cv(args):
    X, y = read_data(args)
    description = f"{args.csv.name}: {len(y)} rows, target {args.target!r}, {args.folds} folds."
    _run_comparison(X, y, args, model_params(args), title=args.title, synthetic=args.synthetic,
                    description=description)


# -- fit ----------------------------------------------------------------------------
def add_fit_parser(subparsers):
    parser = subparsers.add_parser(
        "fit", help="train one model on a cohort and save it",
        description="Fit one model on every row of a cohort CSV and save it (safetensors "
                    "weights + JSON, no pickle) for `bmdkit predict`.")
    add_data_options(parser)
    parser.add_argument("--model", choices=list(MODELS), default="xattn",
                        help="which model (default: %(default)s)")
    parser.add_argument("--out", required=True, help="folder to save the fitted model in")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a model saved at --out before")
    add_model_options(parser)
    parser.set_defaults(func=run_fit)
    return parser


def run_fit(args):
    X, y = read_data(args)
    (name, model), = make_models([args.model], model_params(args), args.image_col).items()
    model.fit(X, y)
    path = model.save(args.out, overwrite=args.overwrite)
    print(f"fitted {name} on {len(y)} rows; saved to {path}")


# -- predict ------------------------------------------------------------------------
def add_predict_parser(subparsers):
    parser = subparsers.add_parser(
        "predict", help="predict BMD, T-score and WHO category with a saved model",
        description="Predict femoral neck BMD for every row of a CSV with a model saved by "
                    "`bmdkit fit`, and write the rows with predicted_bmd, t_score and "
                    "who_category columns. With --target, also print the metrics.")
    add_data_options(parser, target_required=False)
    parser.add_argument("--model", required=True, help="folder of a saved model")
    parser.add_argument("--out", required=True, help="predictions CSV to write")
    parser.add_argument("--densitometer", default="lunar", choices=["lunar", "hologic", "norland"],
                        help="DXA device scale of the BMD, for T-scores (default: %(default)s)")
    parser.add_argument("--device", help="torch device to predict on (default: the saved one)")
    parser.set_defaults(func=run_predict)
    return parser


def run_predict(args):
    import bmdkit
    from bmdkit.clinical import t_score, who_category
    from bmdkit.metrics import compute_metrics

    X, y = read_data(args)
    model = bmdkit.load(args.model, device=args.device)
    out = X.copy()
    out["predicted_bmd"] = model.predict(X)
    out["t_score"] = t_score(out["predicted_bmd"].to_numpy(), device=args.densitometer)
    out["who_category"] = who_category(out["t_score"].to_numpy())
    out.to_csv(args.out, index=False)
    print(f"wrote {len(out)} predictions to {args.out}")
    if y is not None:
        metrics = compute_metrics(y, out["predicted_bmd"], device=args.densitometer)
        for key in ("mse", "mae", "r2", "accuracy@T=-1.0", "who_accuracy"):
            print(f"{key:>16}: {metrics[key]:.4f}")


# -- report -------------------------------------------------------------------------
def add_report_parser(subparsers):
    parser = subparsers.add_parser(
        "report", help="re-render the HTML report from saved results",
        description="Re-draw the figures and HTML page from a results/ folder written by "
                    "`bmdkit demo` or `bmdkit cv` (no refitting).")
    parser.add_argument("--results", required=True, help="results folder (…/results)")
    parser.add_argument("--out", required=True, help="output folder for the report")
    _add_report_options(parser, title="bmdkit model comparison")
    parser.set_defaults(func=run_report)
    return parser


def run_report(args):
    from bmdkit.evaluation import ComparisonResults
    from bmdkit.report import write_report

    results = ComparisonResults.load(args.results)
    page = write_report(results, args.out, title=args.title, synthetic=args.synthetic)
    print(f"report: {page}")


# -- entry point --------------------------------------------------------------------
def build_parser():
    """The argument parser with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="bmdkit",
        description="Femoral neck BMD from hip radiographs plus clinical metadata "
                    "(XAttn-BMD and baselines).")
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for _, target in COMMANDS:
        module, function = target.split(":")
        getattr(importlib.import_module(module), function)(subparsers)
    return parser


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"bmdkit {version('bmdkit')}"
    except PackageNotFoundError:
        return "bmdkit (not installed)"


def main(argv=None):
    """Run ``bmdkit`` with ``argv`` (default: the process arguments)."""
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
