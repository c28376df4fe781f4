"""``bmdkit predict``: stream predictions of a saved model over a CSV or a DICOM folder.

:func:`prediction_columns` and :func:`write_results` also serve
:func:`bmdkit.scaleout.dask_predict` users (docs/scaleout.md).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from bmdkit.cli.common import add_data_options, add_densitometer_option


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
    parser.set_defaults(func=run_predict)
    return parser


def prediction_columns(bmd, densitometer="lunar", sites=None):
    """The result columns ``bmdkit predict`` adds: predicted_bmd, t_score, who_category
    (per site, ``"<site>/<column>"``, for a model of several ``sites``; see
    :func:`bmdkit.uncertainty.prediction_frame`)."""
    from bmdkit.uncertainty import prediction_frame

    return prediction_frame(bmd, sites=sites, device=densitometer)


def result_columns(model, predictions, args):
    """Result columns of one chunk: :func:`prediction_columns`, or for a conformal model
    (``predictions`` of each of its models) the intervals and referral flag too."""
    if hasattr(model, "referral_from_predictions"):
        return model.referral_from_predictions(predictions, confidence=args.confidence,
                                               device=args.densitometer)
    return prediction_columns(predictions, args.densitometer, model.sites_)


def write_results(path, rows, results):
    """Append ``rows`` (the user's rows) with ``results`` (a DataFrame of result columns)
    side by side to the output at ``path`` (see :func:`bmdkit.io.results.append_rows`)."""
    import pandas as pd

    from bmdkit.io.results import append_rows

    append_rows(path, pd.concat([rows.reset_index(drop=True), results.reset_index(drop=True)],
                                axis=1))


def _unique_key(table, key, source):
    from bmdkit.checks import InputError, check_columns

    check_columns(table, [key], role=f"--key column of {source}")
    repeated = table[key][table[key].duplicated(keep=False)]
    if len(repeated):
        raise InputError(f"--key column {key!r} of {source} repeats values (row: value)",
                         {f"row {i}": v for i, v in repeated.items()})


def _csv_rows(args, images):
    """(rows to write, model inputs, key column, rows not to predict) of --csv."""
    import pandas as pd

    from bmdkit.checks import check_columns, check_targets
    from bmdkit.datasets.cohort import resolve_image_paths

    table = pd.read_csv(args.csv, encoding="utf-8-sig")  # the user's rows as written
    check_columns(table, [c for c in (args.image_col if images else None, args.target) if c],
                  role=f"column of {args.csv}")
    check_columns(table, args.drop, role=f"--drop column of {args.csv}")
    if args.target is not None:
        check_targets(table[args.target])
    X = table.drop(columns=[args.target]) if args.target is not None else table
    if images:
        X = X.assign(**{args.image_col: resolve_image_paths(table[args.image_col],
                                                            args.csv.resolve().parent)})
    if args.key is not None:
        _unique_key(table, args.key, args.csv)
        return table, X, args.key, {}
    if "row" in table.columns:
        raise ValueError(f"{args.csv} has a column 'row'; name a column of unique values "
                         "with --key")
    return table.assign(row=range(len(table)))[["row", *table.columns]], X, "row", {}


def _dicom_rows(args, model):
    """(rows to write, model inputs, key column, {position: why not predicted}) of --dicom-dir."""
    import pandas as pd

    from bmdkit.io import DICOM_FIELDS, dicom_metadata_problems, read_dicom_metadata
    from bmdkit.io.readers import DICOM_SUFFIXES

    root = args.dicom_dir
    if not root.is_dir():
        raise FileNotFoundError(f"--dicom-dir {root} is not a folder")
    relative = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if p.is_file() and (p.suffix.lower() in DICOM_SUFFIXES or not p.suffix)
        and not any(part.startswith(".") for part in p.relative_to(root).parts))
    image_col = model.image_col
    rows = pd.DataFrame({image_col: relative})
    skip = {}
    if args.metadata is not None:
        key = args.key or image_col
        table = pd.read_csv(args.metadata, encoding="utf-8-sig")
        _unique_key(table, key, args.metadata)
        table = table.assign(**{key: table[key].astype(str)})
        known = set(table[key])
        skip = {i: f"no row of {args.metadata} with {key} = {p!r}"
                for i, p in enumerate(relative) if p not in known}
        rows = rows.merge(table.drop(columns=[c for c in table.columns if c == image_col]
                                     if key != image_col else []),
                          how="left", left_on=image_col, right_on=key, sort=False)
        if key != image_col:
            rows = rows.drop(columns=[key])
    X = rows.assign(**{image_col: [str(root / p) for p in relative]})
    pre = model.preprocessor_
    lacking = [c for c in pre.numeric_cols_ + pre.categorical_cols_ if c not in X.columns]
    if lacking:
        fields = {f: c for f, c in DICOM_FIELDS.items() if c in lacking}
        unknown = [c for c in lacking if c not in fields.values()]
        if unknown:
            raise ValueError(f"the model needs the columns {unknown}, which neither --metadata "
                             f"nor the DICOM headers ({list(DICOM_FIELDS.values())}) give")
        headers = read_dicom_metadata(X[image_col])
        for position, why in dicom_metadata_problems(headers, fields).items():
            skip.setdefault(position, why)
        columns = {c: headers[c] for c in fields.values()}
        X, rows = X.assign(**columns), rows.assign(**columns)
    return rows, X, image_col, skip


def run_predict(args):
    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    import bmdkit
    from bmdkit.inference import stream_predict
    from bmdkit.io.results import read_rows, remove_rows
    from bmdkit.metrics import compute_metrics
    from bmdkit.nn import fusion_class
    from bmdkit.uncertainty import CONFORMAL_FILE, interval_metrics
    from bmdkit.uncertainty import load as load_conformal

    if (args.csv is None) == (args.dicom_dir is None):
        raise ValueError("give either --csv or --dicom-dir")
    if args.workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {args.workers}")
    conformal = (Path(args.model) / CONFORMAL_FILE).is_file()
    if args.confidence is not None and not conformal:
        raise ValueError(f"--confidence needs a model fitted with --conformal; {args.model} "
                         "has no intervals")
    model = (load_conformal if conformal else bmdkit.load)(args.model, device=args.device)
    member = model.estimators_[0] if conformal else model  # how images and metadata are read
    members = model.estimators_ if conformal else [model]
    if args.missing_image is not None:
        for fitted in members:
            fitted.set_params(missing_image=args.missing_image)
    flag_missing = member.missing_image == "metadata"
    saved = getattr(member, "densitometer_", "lunar")
    if args.densitometer is not None and args.densitometer != saved:
        warnings.warn(f"--densitometer {args.densitometer} differs from the {saved!r} scale "
                      f"{args.model} was saved with; T-scores use {args.densitometer}",
                      UserWarning, stacklevel=2)
    args.densitometer = args.densitometer or saved
    if args.target is not None and member.sites_ and args.target not in member.sites_:
        raise ValueError(f"{args.model} predicts the sites {member.sites_}: --target must name "
                         f"the column of one of them to score it, not {args.target!r}")
    if args.csv is not None:
        rows, X, key, skip = _csv_rows(args, fusion_class(member.fusion).uses_image)
    else:
        rows, X, key, skip = _dicom_rows(args, member)
    errors = args.errors or args.out.with_name(args.out.stem + ".errors.csv")
    if not args.resume:
        remove_rows(args.out)
        remove_rows(errors)
    done = set()
    for path in (args.out, errors):
        written = read_rows(path, dtype={key: str})
        if written is not None:
            done |= set(written[key])
    keys = rows[key].astype(str)
    todo = np.flatnonzero(~keys.isin(done).to_numpy())
    shown = [c for c in (key, member.image_col) if c in rows.columns]
    shown = list(dict.fromkeys(shown))

    def report(positions, reasons):
        write_results(errors, rows.iloc[positions][shown], pd.DataFrame({"error": reasons}))

    skipped = [i for i in todo if i in skip]
    if skipped:
        report(skipped, [skip[i] for i in skipped])
    todo = np.array([i for i in todo if i not in skip], dtype=np.int64)
    n_before, n_written, n_failed = len(rows) - len(todo) - len(skipped), 0, len(skipped)
    with tqdm(total=len(rows), initial=n_before + len(skipped), unit="row",
              desc="bmdkit predict", dynamic_ncols=True) as bar:
        for chunk in stream_predict(model, X.iloc[todo], chunk_size=args.chunk_size,
                                    workers=args.workers):
            n_written += len(chunk.positions)
            if len(chunk.positions):
                results = result_columns(model, chunk.predictions, args)
                if flag_missing:
                    results = results.assign(image_missing=chunk.image_missing)
                write_results(args.out, rows.iloc[todo[chunk.positions]], results)
            if chunk.failures:
                report(todo[list(chunk.failures)], list(chunk.failures.values()))
                n_failed += len(chunk.failures)
            bar.update(len(chunk.positions) + len(chunk.failures))
    print(f"wrote {n_written} predictions to {args.out}"
          + (f" ({n_before} rows were done before)" if args.resume else "")
          + (f"; {n_failed} rows not predicted, listed in {errors}" if n_failed else ""))
    table = read_rows(args.out) if conformal or args.target is not None else None
    if conformal and table is not None:
        print(f"{int(table['refer'].sum())} of {len(table)} rows referred to DXA (interval "
              "contains a screening threshold)")
    if args.target is not None and table is not None:
        # several sites: the metrics of the site the --target column is named after
        prefix = f"{args.target}/" if member.sites_ else ""
        metrics = compute_metrics(table[[args.target]], table[[f"{prefix}predicted_bmd"]],
                                  site=[args.target], device=args.densitometer) if prefix else \
            compute_metrics(table[args.target], table["predicted_bmd"], device=args.densitometer)
        metrics = {name.removeprefix(prefix): value for name, value in metrics.items()}
        if conformal:
            metrics.update(interval_metrics(table[args.target], table[f"{prefix}bmd_lower"],
                                            table[f"{prefix}bmd_upper"]))
        for name in ("mse", "mae", "r2", "accuracy@T=-1.0", "who_accuracy", "coverage",
                     "interval_width"):
            if name in metrics:
                print(f"{name:>16}: {metrics[name]:.4f}")

