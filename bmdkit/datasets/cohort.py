"""Loading a user's cohort: a CSV of image paths, metadata and a target."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from bmdkit.checks import (
    InputError,
    check_all,
    check_columns,
    check_targets,
    image_path_problem,
    image_problem_key,
    is_missing_path,
    warn_input_columns,
)
from bmdkit.errors import MissingFileError
from bmdkit.io.dicom_metadata import DICOM_FIELDS, dicom_metadata_problems, read_dicom_metadata
from bmdkit.io.readers import header_problem

__all__ = ["load_cohort"]


def load_cohort(csv, *, image_col="image_path", target, image_root=None, dicom_metadata=False,
                exclude=(), groups=None, **read_csv_kwargs):
    """Read a cohort table into ``(X, y)`` for the bmdkit estimators.

    Parameters
    ----------
    csv : str or os.PathLike
        A CSV file (UTF-8, a byte-order mark is fine) with one row per image.
    image_col : str or None, default="image_path"
        Column of image paths; relative paths are resolved against
        ``image_root``, else the CSV's folder. ``None``: the table has no
        images (for metadata-only models); nothing is resolved or checked.
    target : str, list of str or None
        Column of femoral neck BMD (g/cm²); a list of several: one column
        per BMD site (e.g. ``["femoral_neck", "total_hip"]``), ``y`` is then
        a DataFrame of them (the estimators keep the names as ``sites_``).
        ``None``: the table has no target (rows to predict); ``y`` is then ``None``.
    image_root : str, os.PathLike or None, default=None
        Folder that relative image paths start from.
    dicom_metadata : bool or dict, default=False
        Fill metadata columns the CSV lacks from the images' DICOM headers
        (:func:`bmdkit.io.read_dicom_metadata`): ``True`` for age, sex,
        height and weight as ``age_at_xray`` (years), ``sex`` (F/M),
        ``height_cm`` (PatientSize in metres, converted to cm) and
        ``weight_kg``; a dict such as ``{"age": "age", "sex": "sex"}`` picks
        fields and names their columns. Columns the CSV has are kept as they
        are. Every row whose header lacks a needed tag is named in one
        :class:`~bmdkit.checks.InputError`.
    exclude : sequence of str, default=()
        Columns that are not model inputs (ids, dates, other outcomes): left
        out of ``X``.
    groups : str or None, default=None
        A column of patient ids for a grouped splitter: kept in ``X`` (take
        it out before fitting) and not warned about as an identifier.
    **read_csv_kwargs
        Passed to :func:`pandas.read_csv` (e.g. ``sep=";"``).

    Returns
    -------
    X : pandas.DataFrame
        Every column but ``target`` and ``exclude``, names kept, image paths
        absolute. Columns that look like identifiers or that predict the
        target almost perfectly are named in an
        :class:`~bmdkit.checks.InputColumnWarning`
        (:func:`~bmdkit.checks.warn_input_columns`): pass them in
        ``exclude`` unless they are meant as inputs.
    y : ndarray of shape (n,) or None
        The target as float64 (``None`` when ``target`` is ``None``).

    Raises
    ------
    bmdkit.checks.InputError
        Naming every missing column, missing or unreadable image file,
        missing or non-numeric target value, and (``dicom_metadata``) every
        row whose DICOM header lacks a needed tag.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> from bmdkit import load_cohort
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    >>> _ = (folder / "cohort.csv").write_text("image_path,age,bmd\\na.png,74,0.81\\n")
    >>> X, y = load_cohort(folder / "cohort.csv", target="bmd")
    >>> list(X.columns), y.tolist(), pathlib.Path(X.image_path[0]).is_absolute()
    (['image_path', 'age'], [0.81], True)
    """
    csv = Path(csv)
    if not csv.is_file():
        raise MissingFileError(f"{csv} not found: no cohort table (CSV) there")
    table = pd.read_csv(csv, encoding=read_csv_kwargs.pop("encoding", "utf-8-sig"),
                        **read_csv_kwargs)
    has_images = image_col is not None and image_col in table.columns
    paths = None
    if has_images:
        paths = resolve_image_paths(table[image_col],
                                    image_root if image_root is not None else csv.resolve().parent)
    targets = [] if target is None else [target] if isinstance(target, str) else list(target)
    several = len(targets) > 1
    *_, y = check_all(  # one error: missing columns, bad image files and bad targets together
        lambda: check_columns(table, [c for c in (image_col, *targets, groups) if c is not None],
                              role=f"column of {csv}"),
        lambda: check_columns(table, [c for c in exclude if c not in targets],
                              role=f"exclude (--drop) column of {csv}"),
        lambda: _check_image_headers(paths, table.index) if has_images else None,
        lambda: (check_targets(table[targets if several else targets[0]], multi_output=several)
                 if targets and set(targets) <= set(table.columns) else None),
    )
    X = table.drop(columns=[*targets, *exclude])
    if has_images:
        X = X.assign(**{image_col: paths})
    if dicom_metadata is not False:
        X = _fill_from_dicom(X, image_col, DICOM_FIELDS if dicom_metadata is True
                             else dicom_metadata)
    if y is not None:  # several sites: columns copying the first one are named
        warn_input_columns(X.drop(columns=[c for c in (image_col, groups) if c is not None]),
                           y[:, 0] if several else y)
    if several:
        y = pd.DataFrame(y, columns=targets, index=table.index)
    return X, y


def resolve_image_paths(paths, root):
    """Image paths with the relative ones resolved against the folder ``root``.

    Examples
    --------
    >>> resolve_image_paths(["/scans/a.dcm", "b.png"], "/cohort")
    ['/scans/a.dcm', '/cohort/b.png']
    """
    root = Path(root)
    return [p if is_missing_path(p) or os.path.isabs(p) else str((root / p).resolve())
            for p in paths]
def _check_image_headers(paths, index):
    """One InputError naming every path that is not a readable, non-empty image file.

    Only headers are read (:func:`bmdkit.io.readers.header_problem`); damaged
    pixels are named when the images are decoded.
    """
    problems = {}
    for label, path in zip(index, paths):
        why = image_path_problem(path)
        if why is None:
            why = header_problem(path)
        if why is not None:
            problems[image_problem_key(label, path)] = why
    if problems:
        n = len(problems)
        raise InputError(f"{n} image file{'s' if n != 1 else ''} cannot be read", problems)


def _fill_from_dicom(X, image_col, fields):
    """``X`` with the columns of ``fields`` ({field: column}) it lacks read from DICOM headers."""
    if image_col is None:
        raise InputError("dicom_metadata needs image paths, but image_col is None", {})
    unknown = [f for f in fields if f not in DICOM_FIELDS]
    if unknown:
        raise InputError(f"dicom_metadata fields unknown (known: {list(DICOM_FIELDS)})",
                         {repr(f): "" for f in unknown})
    wanted = {field: column for field, column in fields.items() if column not in X.columns}
    if not wanted:
        return X
    headers = read_dicom_metadata(X[image_col], index=X.index)
    problems = dicom_metadata_problems(headers, wanted)
    if problems:
        raise InputError(
            f"{len(problems)} row{'s' if len(problems) != 1 else ''} lack DICOM header tags "
            f"for the columns {list(wanted.values())} that the CSV does not have (row: missing)",
            {f"row {label}": why for label, why in problems.items()})
    return X.assign(**{column: headers[DICOM_FIELDS[field]] for field, column in wanted.items()})
