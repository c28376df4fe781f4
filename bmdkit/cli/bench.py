"""``bmdkit bench``: where the time of a fit goes (the bench itself: :mod:`bmdkit.benchmarks`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bmdkit.errors import ParameterError


def add_parser(subparsers):
    """Register ``bmdkit bench``."""
    parser = subparsers.add_parser(
        "bench", help="measure training overhead, cache speedup, throughput and scaling",
        description="Time the network's own forward/backward (floor), the estimator's fit, "
                    "and a loop decoding every file every epoch (naive), on generated "
                    "radiograph-sized files and on the demo cohort; then predict throughput, "
                    "peak memory and scaling with n and image_size. Prints a table and, "
                    "last, the headline ratios. Without --quick or --smoke it runs the FULL "
                    "bench (250 radiographs at 128 px; scaling up to n=4000 and 256 px): "
                    "tens of minutes on 2 CPU cores, against under 3 minutes for --quick "
                    "(--options in full: about 11 minutes). OpenMP threads wait passively "
                    "(OMP_WAIT_POLICY=PASSIVE, set by bmdkit unless already set; see "
                    "docs/performance.md).")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true",
                       help="smaller sizes: under 3 minutes on 2 CPU cores (default: the full "
                            "bench, tens of minutes)")
    modes.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (for CI)")
    parser.add_argument("--options", action="store_true",
                        help="instead, compare the optional speed-ups (bfloat16, channels-last, "
                             "frozen backbone, torch.compile) with float32: times and held-out "
                             "accuracy on the demo cohort (full: about 11 minutes on 2 CPU "
                             "cores; --quick: under a minute)")
    parser.add_argument("--predict", action="store_true",
                        help="instead, measure streaming `bmdkit predict` on generated "
                             "radiograph-sized PNGs and DICOMs: decode floor, compute floor, "
                             "end-to-end rows/s, predict_efficiency, peak memory at two n "
                             "(--quick: a few minutes on 2 CPU cores)")
    parser.add_argument("--workers", type=int,
                        help="with --predict: decoding processes (default: one per core)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: torch's, usually one per core)")
    parser.set_defaults(func=run_bench)
    return parser


def run_bench(args):
    from bmdkit.benchmarks import (
        format_options_table,
        format_predict_table,
        format_table,
        run_benchmarks,
        run_option_benchmarks,
        run_predict_benchmarks,
    )

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.options and args.predict:
        raise ParameterError("--options and --predict are separate benches: give one")
    extra = {"workers": args.workers} if args.predict else {}
    bench, table = ((run_option_benchmarks, format_options_table) if args.options
                    else (run_predict_benchmarks, format_predict_table) if args.predict
                    else (run_benchmarks, format_table))
    result = bench(mode, device=args.device, n_threads=args.threads, **extra,
                   log=lambda message: print(f"[bench] {message}", file=sys.stderr, flush=True))
    print(table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
