"""Predict a saved model over an archive: every row of a CSV, or every DICOM file under a folder.

:func:`predict_archive` is what ``bmdkit predict`` runs (and what ``bmdkit
bench --predict`` times end to end): it streams the rows through
:func:`bmdkit.inference.stream_predict`, writes the user's rows with the
result columns chunk by chunk (:func:`write_results`), lists the rows not
predicted with the reason in an errors file, and with ``resume=True``
predicts only the rows written to neither yet. Its arguments are the options
of ``bmdkit predict``, and its errors name them (``--key``, ``--confidence``
...). It loads nothing heavy when imported (``bmdkit --help`` imports it), and
is imported by the command line and the bench, never by the layers below.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from bmdkit.errors import InputError, ParameterError

__all__ = ["ArchiveRun", "load_model", "predict_archive", "prediction_columns", "result_columns",
           "write_results"]


def prediction_columns(bmd, densitometer="lunar", sites=None):
    """The result columns ``bmdkit predict`` adds: predicted_bmd, t_score, who_category
    (per site, ``"<site>/<column>"``, for a model of several ``sites``; see
    :func:`bmdkit.referral.prediction_frame`)."""
    from bmdkit.referral import prediction_frame

    return prediction_frame(bmd, sites=sites, device=densitometer)


def result_columns(model, predictions, confidence, densitometer):
    """Result columns of one chunk: :func:`prediction_columns`, or for a conformal model
    (``predictions`` of each of its models) the intervals and referral flag too."""
    if hasattr(model, "referral_from_predictions"):
        return model.referral_from_predictions(predictions, confidence=confidence,
                                               device=densitometer)
    return prediction_columns(predictions, densitometer, model.sites_)


def load_model(path, *, device=None):
    """``(model, conformal)``: the model saved in the folder ``path`` by ``bmdkit fit``
    (a :class:`~bmdkit.uncertainty.ConformalBMDRegressor` when it has intervals)."""
    import bmdkit
    from bmdkit.uncertainty import CONFORMAL_FILE
    from bmdkit.uncertainty import load as load_conformal

    conformal = (Path(path) / CONFORMAL_FILE).is_file()
    return (load_conformal if conformal else bmdkit.load)(path, device=device), conformal


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


def _csv_rows(csv, *, images, image_col, target, drop, key):
    """(rows to write, model inputs, key column, rows not to predict) of a CSV."""
    import pandas as pd

    from bmdkit.checks import check_columns, check_targets
    from bmdkit.datasets.cohort import resolve_image_paths

    csv = Path(csv)
    table = pd.read_csv(csv, encoding="utf-8-sig")  # the user's rows as written
    check_columns(table, [c for c in (image_col if images else None, target) if c],
                  role=f"column of {csv}")
    check_columns(table, drop, role=f"--drop column of {csv}")
    if target is not None:
        check_targets(table[target])
    X = table.drop(columns=[target]) if target is not None else table
    if images:
        X = X.assign(**{image_col: resolve_image_paths(table[image_col], csv.resolve().parent)})
    if key is not None:
        _unique_key(table, key, csv)
        return table, X, key, {}
    if "row" in table.columns:
        raise InputError(f"{csv} has a column 'row'; name a column of unique values "
                         "with --key")
    return table.assign(row=range(len(table)))[["row", *table.columns]], X, "row", {}


def _dicom_rows(root, model, *, metadata, key):
    """(rows to write, model inputs, key column, {position: why not predicted}) of a folder."""
    import pandas as pd

    from bmdkit.io import DICOM_FIELDS, dicom_files, dicom_metadata_problems, read_dicom_metadata

    root = Path(root)
    relative = dicom_files(root)
    image_col = model.image_col
    rows = pd.DataFrame({image_col: relative})
    skip = {}
    if metadata is not None:
        key = key or image_col
        table = pd.read_csv(metadata, encoding="utf-8-sig")
        _unique_key(table, key, metadata)
        table = table.assign(**{key: table[key].astype(str)})
        known = set(table[key])
        skip = {i: f"no row of {metadata} with {key} = {p!r}"
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
            raise InputError(f"the model needs the columns {unknown}, which neither --metadata "
                             f"nor the DICOM headers ({list(DICOM_FIELDS.values())}) give")
        headers = read_dicom_metadata(X[image_col])
        for position, why in dicom_metadata_problems(headers, fields).items():
            skip.setdefault(position, why)
        columns = {c: headers[c] for c in fields.values()}
        X, rows = X.assign(**columns), rows.assign(**columns)
    return rows, X, image_col, skip


@dataclass(frozen=True)
class ArchiveRun:
    """What :func:`predict_archive` did.

    Attributes
    ----------
    out, errors : Path
        The predictions and the rows not predicted (with the reason).
    n_written : int
        Rows predicted by this run.
    n_before : int
        Rows found done (in ``out`` or ``errors``) by a ``resume`` run.
    n_failed : int
        Rows this run did not predict, listed in ``errors``.
    conformal : bool
        A conformal model: ``out`` has intervals and the ``refer`` column.
    densitometer : str
        The T-score scale used.
    sites : list of str
        The model's sites (empty: one site, columns without a prefix).
    """

    out: Path
    errors: Path
    n_written: int
    n_before: int
    n_failed: int
    conformal: bool
    densitometer: str
    sites: list


def predict_archive(model, out, *, csv=None, dicom_dir=None, metadata=None, key=None,
                    image_col="image_path", drop=(), target=None, errors=None, workers=None,
                    chunk_size=None, resume=False, densitometer=None, device=None,
                    confidence=None, missing_image=None, reports=None, progress=True):
    """Predict the model saved in the folder ``model`` for every row of ``csv`` or every
    DICOM file under ``dicom_dir``, appending the rows with the result columns to ``out``.

    The arguments are the options of ``bmdkit predict`` of the same names
    (``bmdkit predict --help`` and docs/archive.md describe each);
    ``workers=None`` is one decoding process per CPU core, ``errors=None``
    is ``out`` with ``.errors.csv`` for its suffix, ``progress`` shows a
    progress bar. ``reports`` (e.g. a
    :class:`bmdkit.dicomnode.outputs.ReportWriter`, for ``--sr-dir``) is
    given every chunk of predicted rows: ``reports.check(paths)`` first, then
    ``reports.write_rows(model, X, results)`` per chunk.

    Returns
    -------
    ArchiveRun
    """
    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    from bmdkit.inference import stream_predict
    from bmdkit.io.results import read_rows, remove_rows
    from bmdkit.nn import fusion_class

    if (csv is None) == (dicom_dir is None):
        raise ParameterError("give either --csv or --dicom-dir")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 0:
        raise ParameterError(f"--workers must be 0 or more, got {workers}")
    out = Path(out)
    path, (model, conformal) = model, load_model(model, device=device)
    if confidence is not None and not conformal:
        raise ParameterError(f"--confidence needs a model fitted with --conformal; {path} "
                         "has no intervals")
    member = model.estimators_[0] if conformal else model  # how images and metadata are read
    members = model.estimators_ if conformal else [model]
    if missing_image is not None:
        for fitted in members:
            fitted.set_params(missing_image=missing_image)
    flag_missing = member.missing_image == "metadata"
    saved = getattr(member, "densitometer_", "lunar")
    if densitometer is not None and densitometer != saved:
        warnings.warn(f"--densitometer {densitometer} differs from the {saved!r} scale "
                      f"{path} was saved with; T-scores use {densitometer}",
                      UserWarning, stacklevel=2)
    densitometer = densitometer or saved
    if target is not None and member.sites_ and target not in member.sites_:
        raise ParameterError(f"{path} predicts the sites {member.sites_}: --target must name "
                         f"the column of one of them to score it, not {target!r}")
    if csv is not None:
        rows, X, key, skip = _csv_rows(csv, images=fusion_class(member.fusion).uses_image,
                                       image_col=image_col, target=target, drop=drop, key=key)
    else:
        rows, X, key, skip = _dicom_rows(dicom_dir, member, metadata=metadata, key=key)
    if reports is not None:
        reports.check(X[member.image_col])
    errors = Path(errors) if errors else out.with_name(out.stem + ".errors.csv")
    if not resume:
        remove_rows(out)
        remove_rows(errors)
    done = set()
    for written_to in (out, errors):
        written = read_rows(written_to, dtype={key: str})
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
              desc="bmdkit predict", dynamic_ncols=True, disable=not progress) as bar:
        for chunk in stream_predict(model, X.iloc[todo], chunk_size=chunk_size, workers=workers):
            n_written += len(chunk.positions)
            if len(chunk.positions):
                results = result_columns(model, chunk.predictions, confidence, densitometer)
                if flag_missing:
                    results = results.assign(image_missing=chunk.image_missing)
                write_results(out, rows.iloc[todo[chunk.positions]], results)
                if reports is not None:
                    reports.write_rows(member, X.iloc[todo[chunk.positions]], results)
            if chunk.failures:
                report(todo[list(chunk.failures)], list(chunk.failures.values()))
                n_failed += len(chunk.failures)
            bar.update(len(chunk.positions) + len(chunk.failures))
    return ArchiveRun(out, errors, n_written, n_before, n_failed, conformal, densitometer,
                      list(member.sites_ or []))
