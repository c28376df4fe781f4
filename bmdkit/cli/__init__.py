"""The ``bmdkit`` command: one module per command, listed in :data:`COMMANDS`.

``bmdkit/cli/NAME.py`` is the command ``bmdkit NAME``: its
``add_parser(subparsers)`` registers the options and sets ``func`` to the
function running them. :mod:`bmdkit.cli.common` holds what commands share:
option groups and their readers (:func:`add_model_options` /
:func:`model_params`, :func:`add_data_options` / :func:`read_data`,
:func:`add_groups_option` / :func:`pop_groups`), and :func:`run_command`,
which turns bad input (a missing file or column, an unreadable image, a
missing target) into exit status 2 and one ``bmdkit COMMAND: error: ...``
message naming every problem, not a traceback. A new command is a module
here plus its name in :data:`COMMANDS`.

Building the parser imports no torch, timm, skorch, optuna or matplotlib:
commands import what they run on inside their ``run_*`` function, so
``bmdkit --help`` and ``bmdkit COMMAND --help`` answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bmdkit.cli.common import (
    MODELS,
    add_data_options,
    add_groups_option,
    add_model_options,
    make_models,
    model_params,
    pop_groups,
    read_data,
    run_command,
)
from bmdkit.cli.predict import prediction_columns, write_results

__all__ = ["COMMANDS", "MODELS", "add_data_options", "add_groups_option", "add_model_options",
           "build_parser", "main", "make_models", "model_params", "pop_groups",
           "prediction_columns", "read_data", "write_results"]

#: The commands, in ``--help`` order: ``bmdkit NAME`` is the module ``bmdkit.cli.NAME``.
COMMANDS = ("demo", "cv", "ablation", "fit", "predict", "serve", "report", "tune", "bench",
            "doctor", "pretrain")


def build_parser():
    """The argument parser with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="bmdkit",
        description="Femoral neck BMD from hip radiographs plus clinical metadata "
                    "(XAttn-BMD and baselines).")
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"bmdkit.cli.{name}").add_parser(subparsers)
    return parser


class _Version(argparse.Action):
    """``--version``: bmdkit's version, looked up only when asked (importlib.metadata is slow)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show bmdkit's version and exit"):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        import bmdkit

        parser.exit(message=f"bmdkit {bmdkit.__version__}\n")


def main(argv=None):
    """Run ``bmdkit`` with ``argv`` (default: the process arguments).

    Returns 0. Bad input exits with status 2 after printing
    ``bmdkit COMMAND: error: MESSAGE`` on stderr (see
    :func:`bmdkit.cli.common.run_command`).
    """
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the command that resumes
    run_command(args)
    return 0
