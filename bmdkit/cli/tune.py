"""``bmdkit tune``: an Optuna study over one model, shareable by several processes."""

from __future__ import annotations

import json
import logging
import sys
import warnings

from bmdkit.cli.common import (
    MODELS,
    add_data_options,
    add_groups_option,
    add_model_options,
    make_models,
    model_params,
    pop_groups,
    read_data,
)
from bmdkit.errors import ParameterError

#: ``bmdkit tune --demo`` settings: cohort size, folds and fixed parameters kept small.
DEMO = {"n": 160, "folds": 3, "image_size": 32, "max_epochs": 4, "backbone": "resnet18"}


def add_parser(subparsers):
    """Register ``bmdkit tune``."""
    parser = subparsers.add_parser(
        "tune", help="tune a model's hyperparameters in an Optuna study",
        description="Run trials of an Optuna study: each cross-validates the model "
                    "(BMDStratifiedKFold) with parameters drawn from bmdkit.tuning.search_space. "
                    "Start the same command in several shells or on several machines with "
                    "one --storage and --study-name to share the study and its trial budget. "
                    "Parameters given on the command line (--epochs, --backbone, --param ...) "
                    "are fixed, not searched.",
        epilog="View the study with: optuna-dashboard STORAGE (e.g. optuna-dashboard "
               "sqlite:///bmdkit-tune.db). See docs/tuning.md.")
    data = add_data_options(parser, target_required=False, csv_required=False)
    data.add_argument("--demo", action="store_true",
                      help="tune on the synthetic demo cohort instead of --csv (small and quick: "
                           + ", ".join(f"{k} {v}" for k, v in DEMO.items()) + ")")
    parser.add_argument("--model", choices=MODELS, default="xattn",
                        help="which model (default: %(default)s)")
    study = parser.add_argument_group("study")
    study.add_argument("--n-trials", type=int, default=20,
                       help="trial budget of the whole study, shared by all workers "
                            "(default: %(default)s)")
    study.add_argument("--storage", default="sqlite:///bmdkit-tune.db",
                       help="database URL (sqlite:///FILE, postgresql://USER@HOST/DB) or a "
                            "journal file path (default: %(default)s)")
    study.add_argument("--study-name", help="study name (default: bmdkit-MODEL)")
    study.add_argument("--folds", type=int, help="CV folds per trial (default: 5; demo: 3)")
    add_groups_option(study)
    study.add_argument("--scoring", default="neg_mean_squared_error",
                       help="scikit-learn scorer to maximise (default: %(default)s)")
    study.add_argument("--timeout", type=float, help="start no trial after this many seconds")
    study.add_argument("--heartbeat", type=int, default=60,
                       help="seconds between heartbeats of a database storage; a trial silent "
                            "for twice as long is marked FAIL and retried (default: %(default)s)")
    study.add_argument("--best-params", help="write the best parameters to this JSON file")
    add_model_options(parser)
    parser.set_defaults(func=run_tune)
    return parser


def run_tune(args):
    """Run ``bmdkit tune``."""
    from bmdkit import BMDStratifiedGroupKFold, BMDStratifiedKFold
    from bmdkit.checks import ImputationWarning, warn_missing_values
    from bmdkit.tuning import progress_line, search_space, tune  # names a missing tune extra

    params = model_params(args)
    folds = args.folds or (DEMO["folds"] if args.demo else 5)
    if args.demo:
        from bmdkit.datasets import load_demo_cohort

        X, y = load_demo_cohort(n=DEMO["n"], image_size=DEMO["image_size"],
                                random_state=args.seed)
        params = {k: DEMO[k] for k in ("image_size", "max_epochs", "backbone")} | params
    elif args.csv is None or args.target is None:
        raise ParameterError("needs --csv and --target, or --demo")
    else:
        X, y = read_data(args)
    X, groups = pop_groups(X, args)
    (_, model), = make_models([args.model], params, args.image_col).items()
    space = {k: v for k, v in search_space(model).items() if k not in params}
    study_name = args.study_name or f"bmdkit-{args.model}"
    logging.getLogger("optuna").setLevel(logging.WARNING)  # progress_line reports each trial
    warn_missing_values(X, [c for c in X.columns if c != args.image_col])
    print(f"study {study_name!r} in {args.storage}: {len(y)} rows, {folds} folds, "
          f"searching {sorted(space)}", file=sys.stderr)
    with warnings.catch_warnings():  # counted once above, not again in every fit
        warnings.simplefilter("ignore", ImputationWarning)
        splitter = BMDStratifiedKFold if groups is None else BMDStratifiedGroupKFold
        study = tune(model, X, y, cv=splitter(folds, random_state=args.seed), groups=groups,
                     n_trials=args.n_trials, scoring=args.scoring, storage=args.storage,
                     study_name=study_name, timeout=args.timeout, space=space,
                     callbacks=[progress_line], heartbeat_interval=args.heartbeat)
    try:
        best = study.best_trial
    except ValueError:
        print("no completed trial yet", file=sys.stderr)
        return
    print(f"best trial {best.number}: {args.scoring} = {best.value:.5g}")
    print(json.dumps(best.params, indent=2, sort_keys=True))
    if args.best_params:
        with open(args.best_params, "w", encoding="utf-8") as f:
            json.dump({**params, **best.params}, f, indent=2, sort_keys=True)
    print(f"view the study: optuna-dashboard {args.storage}", file=sys.stderr)
