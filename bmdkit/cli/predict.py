"""``bmdkit predict``: stream predictions of a saved model over a CSV or a DICOM folder.

The work is :func:`bmdkit.archive.predict_archive`; this module parses the
options and prints the summary and, with ``--target``, the metrics.
:func:`prediction_columns` and :func:`write_results` (from
:mod:`bmdkit.archive`, importable here as before) also serve
:func:`bmdkit.scaleout.dask_predict` users (docs/scaleout.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from bmdkit.archive import prediction_columns, write_results
from bmdkit.cli.common import add_data_options, add_densitometer_option

__all__ = ["add_parser", "prediction_columns", "run_predict", "write_results"]


def add_parser(subparsers):
    """Register ``bmdkit predict``."""
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
                    "threshold: refer to DXA). A model of several sites writes these columns "
                    "per site, named <site>/<column>. With --missing-image metadata, rows "
                    "without an image path are predicted from their metadata alone and "
                    "flagged in an image_missing column. With --target, also print the "
                    "metrics. See docs/archive.md and docs/uncertainty.md.")
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
    add_densitometer_option(parser, default=None, shown="the one saved with the model")
    parser.add_argument("--device", help="torch device to predict on, e.g. cuda "
                                         "(default: the saved one)")
    parser.add_argument("--confidence", type=float,
                        help="interval level of a --conformal model (default: the one it was "
                             "fitted with)")
    parser.add_argument("--missing-image", choices=["error", "metadata"],
                        help="rows with no image path (empty cell): 'error' lists them in "
                             "--errors; 'metadata' predicts them from the metadata alone, "
                             "flagged in an image_missing column (needs a model fitted with "
                             "--param modality_dropout=0.3 or so); a path to a missing or "
                             "unreadable file is an error either way (default: the model's "
                             "missing_image, 'error' unless set when fitting)")
    dicom = parser.add_argument_group(
        "clinical outputs", "per predicted DICOM image, named after its SOP Instance UID "
                            "(needs the dicom-node extra; docs/clinical-integration.md)")
    dicom.add_argument("--sr-dir", type=Path, metavar="DIR",
                       help="write a DICOM Structured Report (TID 1500 measurement report: "
                            "BMD, interval, T-score, WHO category, referral, model, source "
                            "image reference) per image to DIR")
    dicom.add_argument("--overlay", action="store_true",
                       help="with --sr-dir: also a Secondary Capture of the saliency map over "
                            "the film")
    dicom.add_argument("--fhir-dir", type=Path, metavar="DIR",
                       help="write a FHIR Observation (JSON) per image to DIR")
    parser.set_defaults(func=run_predict)
    return parser


def run_predict(args):
    from bmdkit.archive import predict_archive
    from bmdkit.conformal import interval_metrics
    from bmdkit.io.results import read_rows
    from bmdkit.metrics import compute_metrics

    reports = None
    if args.sr_dir is not None or args.fhir_dir is not None or args.overlay:
        from bmdkit.dicomnode.outputs import ReportWriter

        reports = ReportWriter(args.model, sr_dir=args.sr_dir, fhir_dir=args.fhir_dir,
                               overlay=args.overlay)
    run = predict_archive(
        args.model, args.out, csv=args.csv, dicom_dir=args.dicom_dir, metadata=args.metadata,
        key=args.key, image_col=args.image_col, drop=args.drop, target=args.target,
        errors=args.errors, workers=args.workers, chunk_size=args.chunk_size,
        resume=args.resume, densitometer=args.densitometer, device=args.device,
        confidence=args.confidence, missing_image=args.missing_image, reports=reports)
    print(f"wrote {run.n_written} predictions to {run.out}"
          + (f" ({run.n_before} rows were done before)" if args.resume else "")
          + (f"; {run.n_failed} rows not predicted, listed in {run.errors}"
             if run.n_failed else ""))
    table = read_rows(run.out) if run.conformal or args.target is not None else None
    if run.conformal and table is not None:
        print(f"{int(table['refer'].sum())} of {len(table)} rows referred to DXA (interval "
              "contains a screening threshold)")
    if args.target is not None and table is not None:
        # several sites: the metrics of the site the --target column is named after
        prefix = f"{args.target}/" if run.sites else ""
        metrics = compute_metrics(table[[args.target]], table[[f"{prefix}predicted_bmd"]],
                                  site=[args.target], device=run.densitometer) if prefix else \
            compute_metrics(table[args.target], table["predicted_bmd"], device=run.densitometer)
        metrics = {name.removeprefix(prefix): value for name, value in metrics.items()}
        if run.conformal:
            metrics.update(interval_metrics(table[args.target], table[f"{prefix}bmd_lower"],
                                            table[f"{prefix}bmd_upper"]))
        for name in ("mse", "mae", "r2", "accuracy@T=-1.0", "who_accuracy", "coverage",
                     "interval_width"):
            if name in metrics:
                print(f"{name:>16}: {metrics[name]:.4f}")
