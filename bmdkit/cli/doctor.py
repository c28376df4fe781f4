"""``bmdkit doctor``: run every CUDA path of bmdkit once (``make gpu-check``); see :mod:`bmdkit.doctor`."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def add_parser(subparsers):
    """Register ``bmdkit doctor``."""
    parser = subparsers.add_parser(
        "doctor", help="check that every CUDA path of bmdkit runs (make gpu-check)",
        description="Run every device path of bmdkit once on --device and report each check "
                    "as pass or fail with its time: fit and predict, save and load across "
                    "devices, bfloat16, float16 (Accelerate fp16), fused AdamW, channels-last, "
                    "torch.compile, explain, `bmdkit predict --device` streaming, `bmdkit "
                    "bench --device`, AcceleratedBMDRegressor in one process, and the paper's "
                    "configuration (ResNet34, 256 px, 10 folds) with its time; under 5 minutes "
                    "on one GPU (docs/performance.md). Exit status: 0 all passed, 1 a check "
                    "failed, 77 no such device (nothing was run).")
    parser.add_argument("--device", default="cuda",
                        help="torch device to check (default: %(default)s; cpu runs the same "
                             "checks on the CPU)")
    parser.add_argument("--only", nargs="+", metavar="CHECK",
                        help="run only these checks (default: all; see bmdkit.doctor.CHECKS)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes: seconds on a CPU (tests the check itself)")
    parser.add_argument("--paper-epochs", type=int, default=20,
                        help="epochs per fold of the paper's configuration (default: "
                             "%(default)s, the estimators' default)")
    parser.add_argument("--out", type=Path,
                        help="also write the results as JSON to OUT/doctor.json, with the "
                             "models, predictions and bench figures of the checks in OUT")
    parser.set_defaults(func=run_doctor)
    return parser


def run_doctor(args):
    from bmdkit.doctor import (
        NO_DEVICE_EXIT,
        NoDeviceError,
        check_device,
        exit_status,
        results_json,
        run_checks,
    )
    from bmdkit.files import write_text

    try:
        device = check_device(args.device)
    except NoDeviceError as error:
        print(f"bmdkit doctor: {error}", file=sys.stderr)
        raise SystemExit(NO_DEVICE_EXIT) from None
    print(f"bmdkit doctor on {args.device}: {device}", file=sys.stderr)
    start = time.perf_counter()
    results = run_checks(args.device, only=args.only, smoke=args.smoke,
                         paper_epochs=args.paper_epochs, workdir=args.out,
                         log=lambda line: print(line, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - start
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{r.status:4}  {r.name:{width}}  {r.seconds:7.1f} s  {r.detail.splitlines()[0]}")
    passed = sum(r.status == "pass" for r in results)
    print(f"{passed} of {len(results)} checks passed on {device} in {seconds:.0f} s")
    if args.out:
        write_text(args.out / "doctor.json", results_json(results, device, seconds))
    raise SystemExit(exit_status(results))
