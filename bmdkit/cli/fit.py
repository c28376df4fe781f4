"""``bmdkit fit``: train one model (optionally with conformal intervals) and save it."""

from __future__ import annotations

from pathlib import Path

from bmdkit.cli.common import (
    MODELS,
    add_data_options,
    add_densitometer_option,
    add_model_options,
    add_resume_option,
    discard_unless_resumed,
    make_models,
    model_params,
    read_data,
    stopped,
)


def add_parser(subparsers):
    """Register ``bmdkit fit``."""
    parser = subparsers.add_parser(
        "fit", help="train one model on a cohort and save it",
        description="Fit one model on every row of a cohort CSV and save it (safetensors "
                    "weights + JSON, no pickle) for `bmdkit predict`.")
    add_data_options(parser, several_targets=True)
    parser.add_argument("--model", choices=MODELS, default="xattn",
                        help="which model (default: %(default)s)")
    parser.add_argument("--out", required=True, help="folder to save the fitted model in")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a model saved at --out before")
    add_densitometer_option(parser)
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
    group = parser.add_argument_group(
        "checkpoints", "A fit that survives being killed: its whole training state saved after "
        "every epoch (docs/protocol.md).")
    group.add_argument("--checkpoint", metavar="DIR",
                       help="save the training state in DIR after every epoch "
                            "(BMDRegressor(checkpoint_dir=DIR); with --conformal, of each fit)")
    add_resume_option(group, what="training state", where="--checkpoint DIR")
    add_model_options(parser)
    parser.set_defaults(func=run_fit)
    return parser


def run_fit(args):
    from bmdkit import BMDStratifiedKFold
    from bmdkit.errors import ParameterError
    from bmdkit.fit_store import FitsInterrupted, stop_on_signals
    from bmdkit.uncertainty import ConformalBMDRegressor

    if args.resume and not args.checkpoint:
        raise ParameterError("--resume needs --checkpoint DIR (the training state to resume "
                             "from); without --checkpoint nothing is kept to resume")
    X, y = read_data(args)
    params = {"verbose": 1, **model_params(args)}  # a line per epoch; --param verbose=0 wins
    if args.checkpoint:
        params["checkpoint_dir"] = args.checkpoint
    (name, model), = make_models([args.model], params, args.image_col).items()
    if args.checkpoint:
        _prepare_checkpoints(args, model, X, y)
    if args.conformal:
        model = ConformalBMDRegressor(
            model, confidence=args.confidence, method=args.conformal,
            cv=BMDStratifiedKFold(args.conformal_folds, random_state=args.seed),
            calibration_size=args.calibration_size, random_state=args.seed)
        name += f" with {args.conformal} conformal intervals ({args.confidence:.0%})"
    try:
        with stop_on_signals():  # skorch would end training quietly and save a partial model
            model.fit(X, y)
    except FitsInterrupted as stop:
        stopped(args, stop, f"the state of the last finished epoch is kept in {args.checkpoint}"
                if args.checkpoint else "nothing was saved", resumable=bool(args.checkpoint))
    for fitted in getattr(model, "estimators_", [model]):  # saved with each model
        fitted.densitometer_ = args.densitometer
        fitted.set_params(checkpoint_dir=None)  # a saved model refits from scratch
    if args.conformal:
        model.set_params(estimator__checkpoint_dir=None)  # and so does its template
    path = model.save(args.out, overwrite=args.overwrite)
    print(f"fitted {name} on {len(y)} rows; saved to {path}")


def _prepare_checkpoints(args, model, X, y):
    """Discard the checkpoints of an earlier run in ``--checkpoint`` unless ``--resume``;
    refuse ``--resume`` when they are all of other fits (other data or settings)."""
    from bmdkit.checkpoint import CHECKPOINT_GLOB, checkpoint_path, fit_fingerprint
    from bmdkit.errors import SavedFileError

    folder = Path(args.checkpoint)
    found = sorted(folder.glob(CHECKPOINT_GLOB))
    discard_unless_resumed(found, args, "the checkpoints of an earlier run")
    if (args.resume and found and not args.conformal
            and checkpoint_path(folder, fit_fingerprint(model, X, y)) not in found):
        raise SavedFileError(
            f"--checkpoint {folder} holds checkpoints of other fits only (other data or "
            "settings): resume with those of the first run, or choose another folder")
