"""``bmdkit ablation``: the paper's ablation, fusions x losses on identical folds."""

from __future__ import annotations

import sys

from bmdkit.cli.common import (
    MODELS,
    add_densitometer_option,
    add_jobs_option,
    add_model_options,
    add_resume_option,
    model_params,
)
from bmdkit.cli.cv import run_comparison
from bmdkit.defaults import DEMO_COHORT_SIZE
from bmdkit.registry import FUSIONS, LOSSES, baseline_label

#: ``bmdkit ablation`` settings: the quick demo's models on five folds, on either synthetic
#: cohort; the bilateral one with 30 epochs and each hip encoded on its own (its two halves
#: as tiles), as measured in docs/model.md.
ABLATION_SETTINGS = {"demo": dict(folds=5, epochs=10, image_size=64, backbone="resnet10t"),
                     "bilateral": dict(folds=5, epochs=30, image_size=64, backbone="resnet10t",
                                       image_tiles=(1, 2))}

#: The model options whose default is the cohort's (:data:`ABLATION_SETTINGS`).
_COHORT_OPTIONS = ("epochs", "image_size", "backbone")


def _default_help(option):
    """The default of ``option`` that ``--help`` shows: the demo cohort's, and each other
    cohort's where it differs.

    Examples
    --------
    >>> _default_help("epochs"), _default_help("image_size")
    ('10 (30 bilateral)', 64)
    """
    demo = ABLATION_SETTINGS["demo"][option]
    others = [f"{settings[option]} {cohort}" for cohort, settings in ABLATION_SETTINGS.items()
              if settings[option] != demo]
    return f"{demo} ({', '.join(others)})" if others else demo


def add_parser(subparsers):
    """Register ``bmdkit ablation``."""
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
                        default=list(FUSIONS.names("ablation")),
                        help="fusions to compare (default: %(default)s)")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES.names("ablation")),
                        choices=LOSSES.names(),
                        help="losses to compare (default: %(default)s)")
    parser.add_argument("--folds", type=int,
                        help=f"stratified folds (default: {_default_help('folds')})")
    parser.add_argument("--n", type=int, help=f"cohort size (default: {DEMO_COHORT_SIZE})")
    parser.add_argument("--out", default="bmdkit-ablation",
                        help="output folder (default: %(default)s)")
    add_jobs_option(parser)
    add_resume_option(parser)
    add_densitometer_option(parser)
    add_model_options(parser, defaults={option: _default_help(option)
                                        for option in _COHORT_OPTIONS})
    parser.set_defaults(func=run_ablation)
    return parser


def run_ablation(args):
    import pandas as pd

    from bmdkit.datasets import load_demo_cohort
    from bmdkit.estimators import ablation_models, model_label
    from bmdkit.evaluation import PAPER_MODEL, paper_comparison

    settings = ABLATION_SETTINGS[args.cohort]
    args.folds = args.folds or settings["folds"]
    for option in _COHORT_OPTIONS:
        if getattr(args, option) is None:
            setattr(args, option, settings[option])
    params = {"image_tiles": settings.get("image_tiles", (1, 1)), **model_params(args)}
    X, y = load_demo_cohort(random_state=args.seed, bilateral=args.cohort == "bilateral",
                            **({"n": args.n} if args.n else {}))
    description = (f"bmdkit ablation on the SYNTHETIC {args.cohort} cohort: {len(y)} subjects, "
                   f"{args.folds}-fold BMDStratifiedKFold, {args.backbone}, {args.epochs} "
                   f"epochs, {args.image_size} px, image_tiles {tuple(params['image_tiles'])}; "
                   f"fusions {', '.join(args.fusions)} x losses {', '.join(args.losses)}.")
    print(description, file=sys.stderr)
    models = ablation_models(args.fusions, args.losses, **params)
    # the reference and the paper's model under the first loss compared (their labels name it)
    baseline = baseline_label(models, args.losses[0])
    results = run_comparison(X, y, args, models, title=f"bmdkit ablation ({args.cohort})",
                             synthetic=True, description=description, baseline=baseline,
                             metrics=("mse", "mae", "r2", "sensitivity@T=-2.5",
                                      "specificity@T=-1.0"))
    if baseline and PAPER_MODEL in args.fusions:
        with pd.option_context("display.width", 200):
            print("\n" + paper_comparison(results, model_label(PAPER_MODEL, args.losses[0]),
                                          baseline).to_string())
    return results

