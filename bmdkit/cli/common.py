"""What the ``bmdkit`` commands share: options, reading a cohort, reporting bad input.

* option groups and their readers: :func:`add_model_options` /
  :func:`model_params`, :func:`add_data_options` / :func:`read_data` (a
  cohort CSV, checked row by row), :func:`add_groups_option` /
  :func:`pop_groups`, :func:`add_densitometer_option`;
* :func:`run_command`: the one place where bmdkit's own errors (bad input, a
  missing optional extra: :data:`USER_ERRORS`) become a ``bmdkit COMMAND: error:
  ...`` message and exit status 2; any other error shows its traceback.

Nothing here imports torch when a parser is built: the defaults shown in
``--help`` are read from :data:`bmdkit.defaults.ESTIMATOR_DEFAULTS`, the
estimator's own.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import warnings
from pathlib import Path

from bmdkit.defaults import ESTIMATOR_DEFAULTS
from bmdkit.errors import BMDKitError, ParameterError
from bmdkit.registry import FUSIONS

#: Model choices: the registered fusions (bmdkit.registry, read without torch).
MODELS = FUSIONS.names()
#: The models ``demo`` and ``cv`` compare by default: XAttn-BMD's four.
DEFAULT_MODELS = FUSIONS.names("default")

#: Errors the user fixes from the message alone: bmdkit's own (bad parameters, input,
#: files, an optional extra that is not installed; :mod:`bmdkit.errors`).
#: :func:`run_command` reports them in one message; anything else is a bug, shown
#: with its traceback.
USER_ERRORS = (BMDKitError,)


def run_command(args):
    """Run the parsed command ``args.func(args)``; bad input exits with status 2.

    A :data:`USER_ERRORS` exception is printed as ``bmdkit COMMAND: error:
    MESSAGE`` on stderr (the message names every offending column, row or
    file), not as a traceback. Warnings are printed as ``bmdkit COMMAND: warning:
    MESSAGE``, without Python's source line.
    """
    python_format, warnings.formatwarning = (
        warnings.formatwarning, functools.partial(_format_warning, args.command))
    try:
        args.func(args)
    except USER_ERRORS as error:
        print(f"bmdkit {args.command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        warnings.formatwarning = python_format


def _format_warning(command, message, category, filename, lineno, line=None):
    """A warning as the user reads it: ``bmdkit COMMAND: warning: MESSAGE``, one sentence.

    Python's default shows the source file and line that warned, which says nothing to
    a user of the command (``warnings.formatwarning``'s signature).

    Examples
    --------
    >>> _format_warning("cv", UserWarning("imputed 2 values"), UserWarning, "cv.py", 59)
    'bmdkit cv: warning: imputed 2 values\\n'
    """
    return f"bmdkit {command}: warning: {message}\n"


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


def add_model_options(parser, *, defaults=None):
    """Options setting the estimator's hyperparameters (see :func:`model_params`).

    ``defaults`` maps option names (``"epochs"``, ``"image_size"``,
    ``"batch_size"``, ``"backbone"``, ``"device"``) to the default shown in
    their help, for a command whose defaults are not BMDRegressor's.
    """
    shown = {option: ESTIMATOR_DEFAULTS[name] for option, name in _MODEL_OPTIONS}
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
    check_param_names(dict(args.param))
    return params


def check_param_names(params):
    """A ParameterError naming each ``--param`` key that BMDRegressor does not take.

    The message suggests the closest parameter names (:func:`difflib.get_close_matches`).
    """
    import difflib

    from bmdkit.estimators import BMDRegressor

    known = sorted(BMDRegressor().get_params())
    unknown = [key for key in params if key not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=3)
            hints.append(f"{key!r} (did you mean {' or '.join(map(repr, close))}?)" if close
                         else repr(key))
        raise ParameterError(f"--param: BMDRegressor has no parameter {', '.join(hints)}; "
                             f"its parameters are {', '.join(known)}")


def add_data_options(parser, *, target_required=True, csv_required=True, several_targets=False):
    """Options naming a cohort CSV and its columns (see :func:`read_data`).

    ``several_targets``: ``--target`` may name several columns, one per BMD site.
    """
    group = parser.add_argument_group("data")
    group.add_argument("--csv", required=csv_required, type=Path,
                       help="cohort table (CSV); relative image paths are relative to its folder")
    if several_targets:
        group.add_argument("--target", required=target_required, nargs="+", metavar="COL",
                           help="column of measured femoral neck BMD in g/cm², or several: one "
                                "per DXA site, named by site (e.g. femoral_neck total_hip "
                                "lumbar_spine) for T-scores; one network predicts them all")
    else:
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
    :class:`~bmdkit.checks.InputError`. y is None without ``--target``;
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
    targets = [args.target] if isinstance(args.target, str) else list(args.target or [])
    exclude = [c for c in args.drop if c not in targets]
    if not images:  # a metadata-only model: an image column is no input (nor an identifier)
        header = pd.read_csv(args.csv, nrows=0, encoding="utf-8-sig").columns
        exclude += [c for c in [args.image_col] if c in header and c not in exclude]
    return load_cohort(args.csv, image_col=args.image_col if images else None,
                       target=targets[0] if len(targets) == 1 else targets or None,
                       exclude=exclude, groups=getattr(args, "groups", None))


def add_groups_option(parser):
    """``--groups COL``: a patient id column; its rows stay in one fold (see :func:`pop_groups`)."""
    parser.add_argument("--groups", metavar="COL",
                        help="column of patient ids: images of one patient never straddle "
                             "folds (BMDStratifiedGroupKFold); the column is not a model input")


def add_jobs_option(parser):
    """``--n-jobs``: cross-validation fits run in parallel processes (see :func:`n_jobs`)."""
    parser.add_argument("--n-jobs", type=int, metavar="N",
                        help="fits run in parallel, each in its own process with "
                             "cores // N torch threads; -1: one per CPU core "
                             "(default: -1 on CPU, 1 on a GPU device)")


def n_jobs(args):
    """``--n-jobs``, or its default: every CPU core on the CPU, one process on a GPU.

    On CPU cores, one-thread fits side by side beat fewer many-thread fits (measured in
    docs/demo.md); processes sharing one GPU would compete for its memory.
    """
    if args.n_jobs is not None:
        return args.n_jobs
    device = getattr(args, "device", None) or "cpu"
    return -1 if device.partition(":")[0] == "cpu" else 1


def pop_groups(X, args):
    """``(X without the --groups column, its values)``, or ``(X, None)`` without ``--groups``.

    Missing ids are named in one :class:`~bmdkit.checks.InputError`.
    """
    from bmdkit.checks import InputError, check_columns

    column = getattr(args, "groups", None)
    if column is None:
        return X, None
    check_columns(X, [column], role="--groups column")
    missing = X.index[X[column].isna()]
    if len(missing):
        raise InputError(f"{len(missing)} rows have no --groups id (column {column!r})",
                         {f"row {label}": "missing" for label in missing})
    return X.drop(columns=[column]), X[column].to_numpy()


def add_resume_option(parser, *, what="finished fits", where="--out DIR/checkpoint"):
    """``--resume``: continue an interrupted run from what it kept (see :func:`stopped`)."""
    parser.add_argument("--resume", action="store_true",
                        help=f"continue an interrupted run: reuse the {what} it kept in "
                             f"{where} (refused when the data or settings differ); without "
                             "it a new run starts and discards them")


def discard_unless_resumed(paths, args, what):
    """Remove ``paths`` (files or folders: ``what`` an earlier run left) unless ``--resume``."""
    import shutil

    paths = [Path(path) for path in paths if Path(path).exists()]
    if args.resume or not paths:
        return
    print(f"discarding {what} in {paths[0].parent} (--resume reuses them)", file=sys.stderr)
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def stopped(args, stop, kept, *, resumable=True):
    """Exit after SIGINT or SIGTERM (``stop``, a FitsInterrupted), printing how to resume.

    ``kept`` says what was written; the command printed is the one run, with ``--resume``
    (none when ``resumable`` is false: nothing was kept to resume from).
    The exit status is 128 + the signal's number, as a shell reports a signal.
    """
    import shlex

    if not resumable:
        print(f"\nbmdkit {args.command}: {stop}; {kept}.", file=sys.stderr)
        raise SystemExit(128 + stop.signum)
    argv = list(getattr(args, "argv", None) or sys.argv[1:])
    command = shlex.join(["bmdkit", *argv, *([] if "--resume" in argv else ["--resume"])])
    print(f"\nbmdkit {args.command}: {stop}; {kept}. Resume with:\n  {command}", file=sys.stderr)
    raise SystemExit(128 + stop.signum)


def make_models(names, params, image_col="image_path"):
    """{display name: unfitted BMDRegressor} for CLI model names (fusions)."""
    from bmdkit.estimators import BMDRegressor, model_label

    return {model_label(name): BMDRegressor(fusion=name, image_col=image_col, **params)
            for name in names}



def add_densitometer_option(parser, *, default="lunar", shown="%(default)s"):
    """``--densitometer``: the DXA device scale of T-scores and thresholds (bmdkit.clinical)."""
    from bmdkit.clinical import SBMD_EQUATIONS

    parser.add_argument("--densitometer", default=default,
                        choices=sorted(SBMD_EQUATIONS["femoral_neck"]),
                        help="DXA device scale of the BMD, for T-scores, WHO categories and "
                             f"screening thresholds (default: {shown})")

