"""``bmdkit demo``: XAttn-BMD's four models compared on the SYNTHETIC demo cohort."""

from __future__ import annotations

import sys

from bmdkit.cli.common import add_model_options, make_models, model_params
from bmdkit.cli.cv import add_cv_options, run_comparison
from bmdkit.defaults import DEMO_COHORT_SIZE

#: ``bmdkit demo`` settings: (--quick, full). Both run on the whole demo cohort.
DEMO_SETTINGS = {
    "folds": (3, 10),
    "epochs": (10, 20),
    "image_size": (64, 64),
    "backbone": ("resnet10t", "resnet10t"),
}


def _demo_default(key):
    """Help text of a demo setting's default: "full" or "full; quick with --quick"."""
    quick, full = DEMO_SETTINGS[key]
    return f"{full}" if quick == full else f"{full}; {quick} with --quick"


def add_parser(subparsers):
    """Register ``bmdkit demo``."""
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
        + f"; the whole cohort of {DEMO_COHORT_SIZE} subjects. --epochs, --image-size, "
          "--backbone, --folds and --n override them.")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smaller run ({quick['folds']} folds, {quick['epochs']} epochs; "
                             "under 5 minutes on 2 CPU cores) instead of the full demo "
                             f"({full['folds']} folds, {full['epochs']} epochs; under 30)")
    parser.add_argument("--out", default="bmdkit-demo",
                        help="output folder for the report (default: %(default)s)")
    parser.add_argument("--n", type=int,
                        help=f"cohort size (default: {DEMO_COHORT_SIZE}, the whole cohort)")
    add_cv_options(parser, folds=None, folds_default=_demo_default("folds"))
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
    run_comparison(X, y, args, models, title="bmdkit demo: XAttn-BMD and baselines",
                   synthetic=True, description=description)

