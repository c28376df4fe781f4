"""The ``bmdkit`` command: ``demo``, ``cv``, ``ablation``, ``fit``, ``predict``, ``report``.

Each subcommand is one ``add_<name>_parser(subparsers)`` function that
registers its options and sets ``func`` to the function running it. The
:data:`COMMANDS` table lists them as ``"module:function"`` strings, imported
only when the command line is built, so another module adds a command with
one line here, e.g. ``("tune", "bmdkit.tuning:add_tune_parser")``. Shared
option groups (:func:`add_model_options`, :func:`add_data_options`) and
their readers (:func:`model_params`, :func:`read_data`) serve every command.
Bad input (a missing file or column, an unreadable image, a missing target)
ends the command with exit status 2 and one ``bmdkit COMMAND: error: ...``
message naming every problem, not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import os
import sys
import warnings
from pathlib import Path

__all__ = ["COMMANDS", "add_data_options", "add_groups_option", "add_model_options",
           "build_parser", "main", "model_params", "pop_groups", "read_data"]

#: (command name, "module:function" adding its parser), in ``--help`` order.
COMMANDS = [
    ("demo", "bmdkit.cli:add_demo_parser"),
    ("cv", "bmdkit.cli:add_cv_parser"),
    ("ablation", "bmdkit.cli:add_ablation_parser"),
    ("fit", "bmdkit.cli:add_fit_parser"),
    ("predict", "bmdkit.cli:add_predict_parser"),
    ("report", "bmdkit.cli:add_report_parser"),
    ("tune", "bmdkit._tune_cli:add_tune_parser"),
    ("bench", "bmdkit.benchmarks:add_bench_parser"),
]

#: Model choices: the registered fusions (bmdkit.nn.fusions), listed here so that
#: ``--help`` needs no torch; tests check the two agree.
MODELS = ("xattn", "concat", "daft", "gated", "late", "image", "metadata")
#: The models ``demo`` and ``cv`` compare by default: XAttn-BMD's four.
DEFAULT_MODELS = ("xattn", "concat", "image", "metadata")
BASELINE = "concat"

#: ``bmdkit demo`` settings: (--quick, full). Both run on the whole demo cohort.
DEMO_SETTINGS = {
    "folds": (5, 10),
    "epochs": (10, 20),
    "image_size": (64, 64),
    "backbone": ("resnet10t", "resnet10t"),
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


#: (option dest, BMDRegressor parameter) of :func:`add_model_options`.
_MODEL_OPTIONS = (("epochs", "max_epochs"), ("image_size", "image_size"),
                  ("batch_size", "batch_size"), ("backbone", "backbone"), ("device", "device"))


def _default(name):
    """Default of a BMDRegressor parameter, for help texts."""
    from bmdkit import BMDRegressor

    return inspect.signature(BMDRegressor).parameters[name].default


def add_model_options(parser, *, defaults=None):
    """Options setting the estimator's hyperparameters (see :func:`model_params`).

    ``defaults`` maps option names (``"epochs"``, ``"image_size"``,
    ``"batch_size"``, ``"backbone"``, ``"device"``) to the default shown in
    their help, for a command whose defaults are not BMDRegressor's.
    """
    shown = {option: _default(name) for option, name in _MODEL_OPTIONS}
    shown.update(defaults or {})
    group = parser.add_argument_group("model")
    group.add_argument("--epochs", type=int,
                       help=f"training epochs per fit (default: {shown['epochs']})")
    group.add_argument("--image-size", type=int,
                       help="side of the square network input in pixels "
                            f"(default: {shown['image_size']})")
    group.add_argument("--batch-size", type=int,
                       help=f"mini-batch size (default: {shown['batch_size']})")
    group.add_argument("--backbone",
                       help=f"timm backbone name (default: {shown['backbone']})")
    group.add_argument("--device", help='torch device, e.g. "cpu" or "cuda" '
                                        f"(default: {shown['device']})")
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
    for option, name in _MODEL_OPTIONS:
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


def read_data(args, *, images=None):
    """(X, y) from :func:`add_data_options` options, read by :func:`bmdkit.load_cohort`.

    Every row is checked as :func:`~bmdkit.load_cohort` does: missing columns,
    image files and target values are named, with their rows, in one
    :class:`~bmdkit.validation.InputError`. y is None without ``--target``;
    the ``--drop`` columns are left out (``exclude``), and so is the image
    column when only metadata-only models run; the ``--groups`` column stays.

    ``images``: whether the image column must be there and its files
    readable; by default unless every chosen model (``args.models`` or
    ``args.model``) is metadata-only.
    """
    import pandas as pd

    from bmdkit.datasets import load_cohort

    if images is None:
        chosen = getattr(args, "models", None) or [getattr(args, "model", None)]
        images = any(name != "metadata" for name in chosen)
    exclude = [c for c in args.drop if c != args.target]
    if not images:  # a metadata-only model: an image column is no input (nor an identifier)
        header = pd.read_csv(args.csv, nrows=0, encoding="utf-8-sig").columns
        exclude += [c for c in [args.image_col] if c in header and c not in exclude]
    return load_cohort(args.csv, image_col=args.image_col if images else None,
                       target=args.target, exclude=exclude, groups=getattr(args, "groups", None))


def add_groups_option(parser):
    """``--groups COL``: a patient id column; its rows stay in one fold (see :func:`pop_groups`)."""
    parser.add_argument("--groups", metavar="COL",
                        help="column of patient ids: images of one patient never straddle "
                             "folds (BMDStratifiedGroupKFold); the column is not a model input")


def pop_groups(X, args):
    """``(X without the --groups column, its values)``, or ``(X, None)`` without ``--groups``.

    Missing ids are named in one :class:`~bmdkit.validation.InputError`.
    """
    from bmdkit.validation import InputError, check_columns

    column = getattr(args, "groups", None)
    if column is None:
        return X, None
    check_columns(X, [column], role="--groups column")
    missing = X.index[X[column].isna()]
    if len(missing):
        raise InputError(f"{len(missing)} rows have no --groups id (column {column!r})",
                         {f"row {label}": "missing" for label in missing})
    return X.drop(columns=[column]), X[column].to_numpy()


def make_models(names, params, image_col="image_path"):
    """{display name: unfitted BMDRegressor} for CLI model names (fusions)."""
    from bmdkit.estimators import FUSION_LABELS, BMDRegressor

    return {FUSION_LABELS[name]: BMDRegressor(fusion=name, image_col=image_col, **params)
            for name in names}


#: Columns of the results table that ``demo`` and ``cv`` print.
PRINTED_METRICS = ("mse", "mae", "r2", "pearson_r", "accuracy@T=-1.0", "roc_auc@T=-1.0",
                   "who_accuracy")


def _run_comparison(X, y, args, models, *, title, synthetic, description, baseline=None,
                    metrics=PRINTED_METRICS):
    """Cross-validate ``models``, print the table, write results and report; the results."""
    import pandas as pd

    from bmdkit import BMDStratifiedGroupKFold, BMDStratifiedKFold
    from bmdkit.estimators import FUSION_LABELS
    from bmdkit.evaluation import compare_models
    from bmdkit.report import write_report
    from bmdkit.validation import ImputationWarning, warn_missing_values

    if baseline is None and FUSION_LABELS[BASELINE] in models:
        baseline = FUSION_LABELS[BASELINE]
    X, groups = pop_groups(X, args)
    splitter = BMDStratifiedKFold if groups is None else BMDStratifiedGroupKFold
    cv = splitter(args.folds, random_state=args.seed)
    warn_missing_values(X, [c for c in X.columns if c != getattr(args, "image_col", "image_path")])
    with warnings.catch_warnings():  # counted once above, not again in every fold
        warnings.simplefilter("ignore", ImputationWarning)
        results = compare_models(models, X, y, cv=cv, groups=groups, baseline=baseline,
                                 device=args.densitometer)
    # saved with the results, so that `bmdkit report` draws the same labels
    results = dataclasses.replace(results, title=title, synthetic=synthetic,
                                  description=description)
    out = Path(args.out)
    results.save(out / "results")
    page = write_report(results, out, title=title, synthetic=synthetic, description=description)
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(results.table(metrics=metrics).to_string())
    print(f"\nreport: {page}\nresults: {out / 'results'}")
    return results


def _add_densitometer_option(parser, *, default="lunar", shown="%(default)s"):
    from bmdkit.clinical import SBMD_EQUATIONS

    parser.add_argument("--densitometer", default=default,
                        choices=sorted(SBMD_EQUATIONS["femoral_neck"]),
                        help="DXA device scale of the BMD, for T-scores, WHO categories and "
                             f"screening thresholds (default: {shown})")


def _add_cv_options(parser, *, folds, folds_default=None):
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(DEFAULT_MODELS),
                        help="models to compare (default: XAttn-BMD's four, "
                             f"{' '.join(DEFAULT_MODELS)}; the baseline of relative changes "
                             f"is {BASELINE!r} when included)")
    parser.add_argument("--folds", type=int, default=folds,
                        help=f"stratified folds (default: {folds_default or folds})")
    add_groups_option(parser)
    _add_densitometer_option(parser)


def _add_report_options(parser, *, title):
    parser.add_argument("--title", default=title, help="report title (default: %(default)s)")
    parser.add_argument("--synthetic", action="store_true",
                        help="label the report as results on synthetic data")


# -- demo ---------------------------------------------------------------------------
def _demo_default(key):
    """Help text of a demo setting's default: "full" or "full; quick with --quick"."""
    quick, full = DEMO_SETTINGS[key]
    return f"{full}" if quick == full else f"{full}; {quick} with --quick"


def add_demo_parser(subparsers):
    from bmdkit.datasets import load_demo_cohort

    cohort_size = inspect.signature(load_demo_cohort).parameters["n"].default
    quick = {key: values[0] for key, values in DEMO_SETTINGS.items()}
    full = {key: values[1] for key, values in DEMO_SETTINGS.items()}
    parser = subparsers.add_parser(
        "demo", help="compare the four models on the synthetic demo cohort",
        description="Cross-validate XAttn, concat, image-only and metadata-only models "
                    "(stratified K-fold) on the synthetic demo cohort, print the results "
                    "table and write an HTML report with figures. Synthetic data: the "
                    "numbers show the pipeline works, not clinical accuracy.",
        epilog="Defaults (--quick / full): " + "; ".join(
            f"{key} {q} / {f}" for key, (q, f) in DEMO_SETTINGS.items())
        + f"; the whole cohort of {cohort_size} subjects. --epochs, --image-size, "
          "--backbone, --folds and --n override them.")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smaller run ({quick['folds']} folds, {quick['epochs']} epochs; "
                             "under 5 minutes on 2 CPU cores) instead of the full demo "
                             f"({full['folds']} folds, {full['epochs']} epochs; under 30)")
    parser.add_argument("--out", default="bmdkit-demo",
                        help="output folder for the report (default: %(default)s)")
    parser.add_argument("--n", type=int,
                        help=f"cohort size (default: {cohort_size}, the whole cohort)")
    _add_cv_options(parser, folds=None, folds_default=_demo_default("folds"))
    add_model_options(parser, defaults={key: _demo_default(key)
                                        for key in ("epochs", "image_size", "backbone")})
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
    X, y = _demo_cohort(args.n, args.seed)
    mode = "quick" if args.quick else "full"
    description = (f"bmdkit demo ({mode}): synthetic hip radiographs and metadata, "
                   f"{len(y)} subjects, {args.folds}-fold BMDStratifiedKFold, "
                   f"{args.backbone}, {args.epochs} epochs, {args.image_size} px images.")
    print(description, file=sys.stderr)
    models = make_models(args.models, model_params(args))
    _run_comparison(X, y, args, models, title="bmdkit demo: XAttn-BMD and baselines",
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
    models = make_models(args.models, model_params(args), args.image_col)
    _run_comparison(X, y, args, models, title=args.title, synthetic=args.synthetic,
                    description=description)


# -- ablation -----------------------------------------------------------------------
#: ``bmdkit ablation`` settings: the quick demo's, on either synthetic cohort.
ABLATION_SETTINGS = {"demo": dict(folds=5, epochs=10, image_size=64, backbone="resnet10t"),
                     "bilateral": dict(folds=5, epochs=10, image_size=128, backbone="resnet10t")}


def add_ablation_parser(subparsers):
    parser = subparsers.add_parser(
        "ablation", help="the paper's ablation: fusions x losses on identical folds",
        description="Cross-validate every chosen fusion with every chosen loss on identical "
                    "BMDStratifiedKFold folds of a synthetic cohort, print the results table "
                    "and XAttn's change against Concat beside XAttn-BMD's reported "
                    "-16.7 %% MSE, -6.03 %% MAE, +16.4 %% R² (with the corrected resampled "
                    "t-test), and write results/ and a report into --out. Synthetic data: "
                    "the numbers compare designs, they are not clinical evidence.",
        epilog="Defaults per cohort: " + "; ".join(
            f"{cohort}: " + ", ".join(f"{k} {v}" for k, v in settings.items())
            for cohort, settings in ABLATION_SETTINGS.items()))
    parser.add_argument("--cohort", choices=list(ABLATION_SETTINGS), default="demo",
                        help="the demo cohort, or the bilateral one (both hips in each image, "
                             "the DXA side in the metadata) (default: %(default)s)")
    parser.add_argument("--fusions", nargs="+", choices=MODELS,
                        default=["xattn", "concat", "daft", "gated", "late"],
                        help="fusions to compare (default: %(default)s)")
    parser.add_argument("--losses", nargs="+", default=["smooth_l1", "weighted_smooth_l1"],
                        choices=["smooth_l1", "weighted_smooth_l1", "mse"],
                        help="losses to compare (default: %(default)s)")
    parser.add_argument("--folds", type=int, help="stratified folds (default: 5)")
    parser.add_argument("--n", type=int, help="cohort size (default: 233)")
    parser.add_argument("--out", default="bmdkit-ablation",
                        help="output folder (default: %(default)s)")
    _add_densitometer_option(parser)
    add_model_options(parser, defaults={"epochs": 10, "image_size": "64 (128 bilateral)",
                                        "backbone": "resnet10t"})
    parser.set_defaults(func=run_ablation)
    return parser


def run_ablation(args):
    import pandas as pd

    from bmdkit.datasets import load_demo_cohort
    from bmdkit.estimators import FUSION_LABELS, ablation_models
    from bmdkit.evaluation import paper_comparison

    settings = ABLATION_SETTINGS[args.cohort]
    args.folds = args.folds or settings["folds"]
    for key, option in (("epochs", "epochs"), ("image_size", "image_size"),
                        ("backbone", "backbone")):
        if getattr(args, option) is None:
            setattr(args, option, settings[key])
    X, y = load_demo_cohort(random_state=args.seed, bilateral=args.cohort == "bilateral",
                            **({"n": args.n} if args.n else {}))
    description = (f"bmdkit ablation on the SYNTHETIC {args.cohort} cohort: {len(y)} subjects, "
                   f"{args.folds}-fold BMDStratifiedKFold, {args.backbone}, {args.epochs} "
                   f"epochs, {args.image_size} px; fusions {', '.join(args.fusions)} x losses "
                   f"{', '.join(args.losses)}.")
    print(description, file=sys.stderr)
    models = ablation_models(args.fusions, args.losses, **model_params(args))
    baseline = FUSION_LABELS["concat"] if "concat" in args.fusions else None
    results = _run_comparison(X, y, args, models, title=f"bmdkit ablation ({args.cohort})",
                              synthetic=True, description=description, baseline=baseline,
                              metrics=("mse", "mae", "r2", "sensitivity@T=-2.5",
                                       "specificity@T=-1.0"))
    if baseline and "xattn" in args.fusions:
        with pd.option_context("display.width", 200):
            print("\n" + paper_comparison(results, "XAttn", baseline).to_string())
    return results


# -- fit ----------------------------------------------------------------------------
def add_fit_parser(subparsers):
    parser = subparsers.add_parser(
        "fit", help="train one model on a cohort and save it",
        description="Fit one model on every row of a cohort CSV and save it (safetensors "
                    "weights + JSON, no pickle) for `bmdkit predict`.")
    add_data_options(parser)
    parser.add_argument("--model", choices=MODELS, default="xattn",
                        help="which model (default: %(default)s)")
    parser.add_argument("--out", required=True, help="folder to save the fitted model in")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a model saved at --out before")
    _add_densitometer_option(parser)
    group = parser.add_argument_group(
        "prediction intervals", "With --conformal, `bmdkit predict` also writes conformal "
        "intervals (bmd_lower, bmd_upper, t_score_lower, t_score_upper) and a refer column "
        "(the interval contains a screening threshold); see docs/uncertainty.md.")
    group.add_argument("--conformal", choices=["split", "cv+"],
                       help="calibrate intervals: 'split' fits one model on 1 - "
                            "--calibration-size of the rows and calibrates on the rest; 'cv+' "
                            "fits one model per fold (--conformal-folds) and saves them all")
    group.add_argument("--confidence", type=float, default=0.9,
                       help="interval level, the marginal coverage aimed at "
                            "(default: %(default)s)")
    group.add_argument("--calibration-size", type=float, default=0.2,
                       help="share of rows held out to calibrate 'split' (default: %(default)s)")
    group.add_argument("--conformal-folds", type=int, default=5,
                       help="folds of 'cv+' (default: %(default)s)")
    add_model_options(parser)
    parser.set_defaults(func=run_fit)
    return parser


def run_fit(args):
    from bmdkit import BMDStratifiedKFold
    from bmdkit.uncertainty import ConformalBMDRegressor

    X, y = read_data(args)
    params = {"verbose": 1, **model_params(args)}  # a line per epoch; --param verbose=0 wins
    (name, model), = make_models([args.model], params, args.image_col).items()
    if args.conformal:
        model = ConformalBMDRegressor(
            model, confidence=args.confidence, method=args.conformal,
            cv=BMDStratifiedKFold(args.conformal_folds, random_state=args.seed),
            calibration_size=args.calibration_size, random_state=args.seed)
        name += f" with {args.conformal} conformal intervals ({args.confidence:.0%})"
    model.fit(X, y)
    for fitted in getattr(model, "estimators_", [model]):  # saved with each model
        fitted.densitometer_ = args.densitometer
    path = model.save(args.out, overwrite=args.overwrite)
    print(f"fitted {name} on {len(y)} rows; saved to {path}")


# -- predict ------------------------------------------------------------------------
def add_predict_parser(subparsers):
    parser = subparsers.add_parser(
        "predict", help="predict BMD, T-score and WHO category with a saved model",
        description="Predict femoral neck BMD with a model saved by `bmdkit fit` for every row "
                    "of a CSV (--csv) or every DICOM file under a folder (--dicom-dir), and "
                    "write the rows as they are in the CSV (--drop columns included) with "
                    "predicted_bmd, t_score and who_category columns added. Streams: images "
                    "are decoded by --workers processes while the network predicts, output "
                    "is written chunk by chunk (a progress bar shows rows/s and ETA), and "
                    "--resume continues an interrupted run. Rows whose image cannot be read "
                    "are listed with the reason in the --errors file; the run goes on. For a "
                    "model fitted with --conformal also bmd_lower, bmd_upper, t_score_lower, "
                    "t_score_upper and refer (true when the interval contains a screening "
                    "threshold: refer to DXA). With --target, also print the metrics. See "
                    "docs/archive.md.")
    add_data_options(parser, target_required=False, csv_required=False)
    archive = parser.add_argument_group("archive")
    archive.add_argument("--dicom-dir", type=Path, metavar="DIR",
                         help="instead of --csv: every DICOM file under DIR, recursively (names "
                              "ending in .dcm/.dicom or without a suffix); the output's "
                              "image_path is the path relative to DIR")
    archive.add_argument("--metadata", type=Path, metavar="CSV",
                         help="with --dicom-dir: metadata, one row per file, matched on --key; "
                              "model columns it lacks (age_at_xray, sex, height_cm, weight_kg) "
                              "are read from the DICOM headers")
    archive.add_argument("--key", metavar="COL",
                         help="column identifying each row, written first: with --csv a column "
                              "of unique values (default: a 'row' column with the CSV row "
                              "number, from 0); with --metadata the column holding each file's "
                              "path relative to DIR (default: image_path)")
    archive.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                         help="processes decoding images while the network predicts; 0 decodes "
                              "in the main process (default: one per core, %(default)s here)")
    archive.add_argument("--chunk-size", type=int, default=None, metavar="ROWS",
                         help="rows predicted and written at a time, rounded up to whole batches "
                              "(default: 64); memory grows with it, not with the row count")
    archive.add_argument("--resume", action="store_true",
                         help="continue an interrupted run: keep the rows already in --out and "
                              "--errors and predict only the others (default: start afresh)")
    parser.add_argument("--model", required=True, help="folder of a saved model")
    parser.add_argument("--out", required=True, type=Path,
                        help="predictions: a CSV file, or a Parquet folder when the name ends "
                             "in .parquet (needs pyarrow)")
    parser.add_argument("--errors", type=Path,
                        help="CSV of the rows not predicted (unreadable or missing image, no "
                             "metadata) with the reason (default: OUT with .errors.csv for its "
                             "suffix)")
    _add_densitometer_option(parser, default=None, shown="the one saved with the model")
    parser.add_argument("--device", help="torch device to predict on, e.g. cuda "
                                         "(default: the saved one)")
    parser.add_argument("--confidence", type=float,
                        help="interval level of a --conformal model (default: the one it was "
                             "fitted with)")
    parser.set_defaults(func=run_predict)
    return parser


def prediction_columns(bmd, densitometer="lunar"):
    """The result columns ``bmdkit predict`` adds: predicted_bmd, t_score, who_category."""
    import pandas as pd

    from bmdkit.clinical import t_score, who_category

    scores = t_score(bmd, device=densitometer)
    return pd.DataFrame({"predicted_bmd": bmd, "t_score": scores,
                         "who_category": who_category(scores)})


def result_columns(model, predictions, args):
    """Result columns of one chunk: :func:`prediction_columns`, or for a conformal model
    (``predictions`` of each of its models) the intervals and referral flag too."""
    if hasattr(model, "referral_from_predictions"):
        return model.referral_from_predictions(predictions, confidence=args.confidence,
                                               device=args.densitometer)
    return prediction_columns(predictions, args.densitometer)


def write_results(path, rows, results):
    """Append ``rows`` (the user's rows) with ``results`` (a DataFrame of result columns)
    side by side to the output at ``path`` (see :func:`bmdkit.io.results.append_rows`)."""
    import pandas as pd

    from bmdkit.io.results import append_rows

    append_rows(path, pd.concat([rows.reset_index(drop=True), results.reset_index(drop=True)],
                                axis=1))


def _unique_key(table, key, source):
    from bmdkit.validation import InputError, check_columns

    check_columns(table, [key], role=f"--key column of {source}")
    repeated = table[key][table[key].duplicated(keep=False)]
    if len(repeated):
        raise InputError(f"--key column {key!r} of {source} repeats values (row: value)",
                         {f"row {i}": v for i, v in repeated.items()})


def _csv_rows(args, images):
    """(rows to write, model inputs, key column, rows not to predict) of --csv."""
    import pandas as pd

    from bmdkit.datasets.cohort import resolve_image_paths
    from bmdkit.validation import check_columns, check_targets

    table = pd.read_csv(args.csv, encoding="utf-8-sig")  # the user's rows as written
    check_columns(table, [c for c in (args.image_col if images else None, args.target) if c],
                  role=f"column of {args.csv}")
    check_columns(table, args.drop, role=f"--drop column of {args.csv}")
    if args.target is not None:
        check_targets(table[args.target])
    X = table.drop(columns=[args.target]) if args.target is not None else table
    if images:
        X = X.assign(**{args.image_col: resolve_image_paths(table[args.image_col],
                                                            args.csv.resolve().parent)})
    if args.key is not None:
        _unique_key(table, args.key, args.csv)
        return table, X, args.key, {}
    if "row" in table.columns:
        raise ValueError(f"{args.csv} has a column 'row'; name a column of unique values "
                         "with --key")
    return table.assign(row=range(len(table)))[["row", *table.columns]], X, "row", {}


def _dicom_rows(args, model):
    """(rows to write, model inputs, key column, {position: why not predicted}) of --dicom-dir."""
    import pandas as pd

    from bmdkit.io import DICOM_FIELDS, dicom_metadata_problems, read_dicom_metadata
    from bmdkit.io.readers import DICOM_SUFFIXES

    root = args.dicom_dir
    if not root.is_dir():
        raise FileNotFoundError(f"--dicom-dir {root} is not a folder")
    relative = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if p.is_file() and (p.suffix.lower() in DICOM_SUFFIXES or not p.suffix)
        and not any(part.startswith(".") for part in p.relative_to(root).parts))
    image_col = model.image_col
    rows = pd.DataFrame({image_col: relative})
    skip = {}
    if args.metadata is not None:
        key = args.key or image_col
        table = pd.read_csv(args.metadata, encoding="utf-8-sig")
        _unique_key(table, key, args.metadata)
        table = table.assign(**{key: table[key].astype(str)})
        known = set(table[key])
        skip = {i: f"no row of {args.metadata} with {key} = {p!r}"
                for i, p in enumerate(relative) if p not in known}
        rows = rows.merge(table.drop(columns=[c for c in table.columns if c == image_col]
                                     if key != image_col else []),
                          how="left", left_on=image_col, right_on=key, sort=False)
        if key != image_col:
            rows = rows.drop(columns=[key])
    X = rows.assign(**{image_col: [str(root / p) for p in relative]})
    pre = model.preprocessor_
    lacking = [c for c in pre.numeric_cols_ + pre.categorical_cols_ if c not in X.columns]
    if lacking:
        fields = {f: c for f, c in DICOM_FIELDS.items() if c in lacking}
        unknown = [c for c in lacking if c not in fields.values()]
        if unknown:
            raise ValueError(f"the model needs the columns {unknown}, which neither --metadata "
                             f"nor the DICOM headers ({list(DICOM_FIELDS.values())}) give")
        headers = read_dicom_metadata(X[image_col])
        for position, why in dicom_metadata_problems(headers, fields).items():
            skip.setdefault(position, why)
        columns = {c: headers[c] for c in fields.values()}
        X, rows = X.assign(**columns), rows.assign(**columns)
    return rows, X, image_col, skip


def run_predict(args):
    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    import bmdkit
    from bmdkit.inference import stream_predict
    from bmdkit.io.results import read_rows, remove_rows
    from bmdkit.metrics import compute_metrics
    from bmdkit.nn import fusion_class
    from bmdkit.uncertainty import CONFORMAL_FILE, interval_metrics
    from bmdkit.uncertainty import load as load_conformal

    if (args.csv is None) == (args.dicom_dir is None):
        raise ValueError("give either --csv or --dicom-dir")
    if args.workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {args.workers}")
    conformal = (Path(args.model) / CONFORMAL_FILE).is_file()
    if args.confidence is not None and not conformal:
        raise ValueError(f"--confidence needs a model fitted with --conformal; {args.model} "
                         "has no intervals")
    model = (load_conformal if conformal else bmdkit.load)(args.model, device=args.device)
    member = model.estimators_[0] if conformal else model  # how images and metadata are read
    saved = getattr(member, "densitometer_", "lunar")
    if args.densitometer is not None and args.densitometer != saved:
        warnings.warn(f"--densitometer {args.densitometer} differs from the {saved!r} scale "
                      f"{args.model} was saved with; T-scores use {args.densitometer}",
                      UserWarning, stacklevel=2)
    args.densitometer = args.densitometer or saved
    if args.csv is not None:
        rows, X, key, skip = _csv_rows(args, fusion_class(member.fusion).uses_image)
    else:
        rows, X, key, skip = _dicom_rows(args, member)
    errors = args.errors or args.out.with_name(args.out.stem + ".errors.csv")
    if not args.resume:
        remove_rows(args.out)
        remove_rows(errors)
    done = set()
    for path in (args.out, errors):
        written = read_rows(path, dtype={key: str})
        if written is not None:
            done |= set(written[key])
    keys = rows[key].astype(str)
    todo = np.flatnonzero(~keys.isin(done).to_numpy())
    shown = [c for c in (key, member.image_col) if c in rows.columns]
    shown = list(dict.fromkeys(shown))

    def report(positions, reasons):
        write_results(errors, rows.iloc[positions][shown], pd.DataFrame({"error": reasons}))

    skipped = [i for i in todo if i in skip]
    if skipped:
        report(skipped, [skip[i] for i in skipped])
    todo = np.array([i for i in todo if i not in skip], dtype=np.int64)
    n_before, n_written, n_failed = len(rows) - len(todo) - len(skipped), 0, len(skipped)
    with tqdm(total=len(rows), initial=n_before + len(skipped), unit="row",
              desc="bmdkit predict", dynamic_ncols=True) as bar:
        for chunk in stream_predict(model, X.iloc[todo], chunk_size=args.chunk_size,
                                    workers=args.workers):
            n_written += len(chunk.positions)
            if len(chunk.positions):
                write_results(args.out, rows.iloc[todo[chunk.positions]],
                              result_columns(model, chunk.predictions, args))
            if chunk.failures:
                report(todo[list(chunk.failures)], list(chunk.failures.values()))
                n_failed += len(chunk.failures)
            bar.update(len(chunk.positions) + len(chunk.failures))
    print(f"wrote {n_written} predictions to {args.out}"
          + (f" ({n_before} rows were done before)" if args.resume else "")
          + (f"; {n_failed} rows not predicted, listed in {errors}" if n_failed else ""))
    table = read_rows(args.out) if conformal or args.target is not None else None
    if conformal and table is not None:
        print(f"{int(table['refer'].sum())} of {len(table)} rows referred to DXA (interval "
              "contains a screening threshold)")
    if args.target is not None and table is not None:
        metrics = compute_metrics(table[args.target], table["predicted_bmd"],
                                  device=args.densitometer)
        if conformal:
            metrics.update(interval_metrics(table[args.target], table["bmd_lower"],
                                            table["bmd_upper"]))
        for name in ("mse", "mae", "r2", "accuracy@T=-1.0", "who_accuracy", "coverage",
                     "interval_width"):
            if name in metrics:
                print(f"{name:>16}: {metrics[name]:.4f}")


# -- report -------------------------------------------------------------------------
#: Title of a report re-drawn from results saved without one.
REPORT_TITLE = "bmdkit model comparison"


def add_report_parser(subparsers):
    parser = subparsers.add_parser(
        "report", help="re-render the HTML report from saved results",
        description="Re-draw the figures and HTML page from a results/ folder written by "
                    "`bmdkit demo` or `bmdkit cv` (no refitting).")
    parser.add_argument("--results", required=True, help="results folder (…/results)")
    parser.add_argument("--out", required=True, help="output folder for the report")
    parser.add_argument("--title", help="report title (default: the one saved with the results, "
                                        f"else {REPORT_TITLE!r})")
    parser.add_argument("--synthetic", action="store_true",
                        help="label the report as results on synthetic data (results of "
                             "`bmdkit demo` and `bmdkit cv --synthetic` are labelled anyway)")
    parser.set_defaults(func=run_report)
    return parser


def run_report(args):
    from bmdkit.evaluation import ComparisonResults
    from bmdkit.report import write_report

    results = ComparisonResults.load(args.results)
    page = write_report(results, args.out, title=args.title or results.title or REPORT_TITLE,
                        synthetic=args.synthetic or results.synthetic,
                        description=results.description)
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
    """Run ``bmdkit`` with ``argv`` (default: the process arguments).

    Returns 0. Bad input exits with status 2 after printing
    ``bmdkit COMMAND: error: MESSAGE`` on stderr: an
    :class:`~bmdkit.validation.InputError` or other ``ValueError``, a
    ``FileNotFoundError`` or a ``FileExistsError``.
    """
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:  # InputError: ValueError
        print(f"bmdkit {args.command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
