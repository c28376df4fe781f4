"""Loading a user's cohort: a CSV of image paths, metadata and a target."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from bmdkit.io.dicom_metadata import DICOM_FIELDS, dicom_metadata_problems, read_dicom_metadata
from bmdkit.validation import InputError, check_columns, check_image_files, check_targets

__all__ = ["load_cohort"]


def load_cohort(csv, *, image_col="image_path", target, image_root=None, dicom_metadata=False,
                **read_csv_kwargs):
    """Read a cohort table into ``(X, y)`` for the bmdkit estimators.

    Parameters
    ----------
    csv : str or os.PathLike
        A CSV file (UTF-8, a byte-order mark is fine) with one row per image.
    image_col : str or None, default="image_path"
        Column of image paths; relative paths are resolved against
        ``image_root``, else the CSV's folder. ``None``: the table has no
        images (for metadata-only models); nothing is resolved or checked.
    target : str or None
        Column of femoral neck BMD (g/cm²). ``None``: the table has no
        target (rows to predict); ``y`` is then ``None``.
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
        :class:`~bmdkit.validation.InputError`.
    **read_csv_kwargs
        Passed to :func:`pandas.read_csv` (e.g. ``sep=";"``).

    Returns
    -------
    X : pandas.DataFrame
        Every column but ``target``, names kept, image paths absolute.
    y : ndarray of shape (n,) or None
        The target as float64 (``None`` when ``target`` is ``None``).

    Raises
    ------
    bmdkit.validation.InputError
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
    table = pd.read_csv(csv, encoding=read_csv_kwargs.pop("encoding", "utf-8-sig"),
                        **read_csv_kwargs)
    check_columns(table, [c for c in (image_col, target) if c is not None],
                  role=f"column of {csv}")
    X = table.drop(columns=[target]) if target is not None else table
    if image_col is not None:
        paths = resolve_image_paths(table[image_col],
                                    image_root if image_root is not None else csv.resolve().parent)
        check_image_files(paths, index=table.index)
        X = X.assign(**{image_col: paths})
    if dicom_metadata is not False:
        X = _fill_from_dicom(X, image_col, DICOM_FIELDS if dicom_metadata is True
                             else dicom_metadata)
    y = check_targets(table[target]) if target is not None else None
    return X, y


def resolve_image_paths(paths, root):
    """Image paths with the relative ones resolved against the folder ``root``.

    Examples
    --------
    >>> resolve_image_paths(["/scans/a.dcm", "b.png"], "/cohort")
    ['/scans/a.dcm', '/cohort/b.png']
    """
    root = Path(root)
    return [p if not isinstance(p, str) or os.path.isabs(p) else str((root / p).resolve())
            for p in paths]


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
