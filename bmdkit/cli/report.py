"""``bmdkit report``: re-draw the HTML report from saved results (no refitting)."""

from __future__ import annotations

#: Title of a report re-drawn from results saved without one.
REPORT_TITLE = "bmdkit model comparison"


def add_parser(subparsers):
    """Register ``bmdkit report``."""
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

