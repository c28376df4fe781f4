"""Patient metadata from DICOM headers: age, sex, height and weight.

Hospital exports often carry these only in the header. Values follow the
cohort convention of :func:`bmdkit.load_demo_cohort`: age in years at the
x-ray, sex ``"F"``/``"M"`` (``"O"`` kept as is), height in cm and weight in kg.
"""

from __future__ import annotations

import os
from datetime import date

import numpy as np
import pandas as pd

__all__ = ["DICOM_FIELDS", "dicom_metadata_problems", "header_metadata", "read_dicom_metadata"]

#: Field -> default column name (the synthetic cohort's names) of what headers give.
DICOM_FIELDS = {"age": "age_at_xray", "sex": "sex", "height": "height_cm", "weight": "weight_kg"}
#: Tags read for each field, in the order tried.
FIELD_TAGS = {
    "age": "PatientAge, else PatientBirthDate with StudyDate (else AcquisitionDate)",
    "sex": "PatientSex",
    "height": "PatientSize",
    "weight": "PatientWeight",
}
_AGE_UNITS = {"Y": 1.0, "M": 12.0, "W": 365.25 / 7, "D": 365.25}


def read_dicom_metadata(paths, *, index=None):
    """Age, sex, height and weight of each file's patient, from its DICOM header.

    Only headers are read (``stop_before_pixels``). Age is PatientAge
    (``"076Y"``, ``"018M"``, ``"010W"``, ``"200D"``) in years, else the years
    between PatientBirthDate and StudyDate (else AcquisitionDate); sex is
    PatientSex; height is PatientSize converted from metres to **cm**;
    weight is PatientWeight in kg. Empty tags, unparsable values and a height
    or weight of 0 (some exporters' "unknown") are missing.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        DICOM files; a file that is not DICOM gives a row of missing values.
    index : sequence or None
        Row labels of the result (default: positions).

    Returns
    -------
    pandas.DataFrame
        Columns ``age_at_xray`` (float, years), ``sex`` (object: ``"F"``,
        ``"M"``, ``"O"``), ``height_cm`` and ``weight_kg`` (float); NaN/None
        where the header lacks the tag. ``df.attrs["unreadable"]`` maps the
        label of every file that is not a readable DICOM to why.

    See Also
    --------
    dicom_metadata_problems : name every row whose header lacks a needed tag.
    bmdkit.load_cohort : ``dicom_metadata=True`` fills a CSV's missing columns.

    Examples
    --------
    >>> import os, tempfile
    >>> from pydicom.dataset import Dataset
    >>> from bmdkit.io import read_dicom_metadata
    >>> ds = Dataset()
    >>> ds.preamble = bytes(128)  # a DICOM file starts with 128 bytes and "DICM"
    >>> ds.PatientAge, ds.PatientSex, ds.PatientSize, ds.PatientWeight = "076Y", "F", 1.62, 61
    >>> path = os.path.join(tempfile.mkdtemp(), "hip.dcm")
    >>> ds.save_as(path, implicit_vr=True, little_endian=True)
    >>> read_dicom_metadata([path]).iloc[0].to_dict()
    {'age_at_xray': 76.0, 'sex': 'F', 'height_cm': 162.0, 'weight_kg': 61.0}
    """
    paths = list(paths)
    index = list(range(len(paths))) if index is None else list(index)
    rows, unreadable = [], {}
    for label, path in zip(index, paths):
        try:
            ds = _read_header(path)
        except Exception as err:  # noqa: BLE001 - any unreadable header is a missing row
            unreadable[label] = f"{os.fspath(path)}: not a readable DICOM file ({err})"
            ds = None
        rows.append(_fields(ds))
    frame = pd.DataFrame(rows, index=pd.Index(index),
                         columns=list(DICOM_FIELDS.values())).astype(
        {"age_at_xray": float, "sex": object, "height_cm": float, "weight_kg": float})
    frame.attrs["unreadable"] = unreadable
    return frame


def header_metadata(ds):
    """Age, sex, height and weight of one header (a pydicom Dataset), read as
    :func:`read_dicom_metadata` reads files: ``{column: value or None/NaN}``.

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset()
    >>> ds.PatientAge, ds.PatientSex, ds.PatientSize = "076Y", "F", 1.62
    >>> header_metadata(ds)
    {'age_at_xray': 76.0, 'sex': 'F', 'height_cm': 162.0, 'weight_kg': None}
    """
    return dict(zip(DICOM_FIELDS.values(), _fields(ds)))


def dicom_metadata_problems(metadata, fields=tuple(DICOM_FIELDS)):
    """Row label -> the missing tags of ``fields``, for every row of ``metadata`` lacking one.

    Parameters
    ----------
    metadata : pandas.DataFrame
        The output of :func:`read_dicom_metadata`, possibly with rows
        already known from elsewhere filled in.
    fields : iterable of str
        Which of ``"age"``, ``"sex"``, ``"height"``, ``"weight"`` are needed.

    Returns
    -------
    dict
        Suitable for :class:`bmdkit.checks.InputError`.

    Examples
    --------
    >>> import pandas as pd
    >>> meta = pd.DataFrame({"age_at_xray": [76.0, None], "sex": ["F", None],
    ...                      "height_cm": [162.0, 170.0], "weight_kg": [61.0, 70.0]})
    >>> dicom_metadata_problems(meta, ["age", "sex"])
    {1: 'no PatientAge, else PatientBirthDate with StudyDate (else AcquisitionDate); no PatientSex'}
    """
    unreadable = metadata.attrs.get("unreadable", {})
    problems = {}
    for label, row in metadata.iterrows():
        missing = [FIELD_TAGS[f] for f in fields if pd.isna(row[DICOM_FIELDS[f]])]
        if missing:
            why = "; ".join(f"no {tag}" for tag in missing)
            problems[label] = f"{unreadable[label]}" if label in unreadable else why
    return problems


def _read_header(path):
    import pydicom

    return pydicom.dcmread(os.fspath(path), stop_before_pixels=True)


def _fields(ds):
    if ds is None:
        return [np.nan, None, np.nan, np.nan]
    sex = str(ds.get("PatientSex", "") or "").strip().upper() or None
    height = _positive(ds.get("PatientSize"))
    return [_age(ds), sex, None if height is None else height * 100.0,
            _positive(ds.get("PatientWeight"))]


def _positive(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _age(ds):
    text = str(ds.get("PatientAge", "") or "").strip().upper()
    if len(text) >= 2 and text[:-1].isdigit() and text[-1] in _AGE_UNITS:
        return int(text[:-1]) / _AGE_UNITS[text[-1]]
    birth = _date(ds.get("PatientBirthDate"))
    seen = _date(ds.get("StudyDate")) or _date(ds.get("AcquisitionDate"))
    if birth is None or seen is None or seen < birth:
        return np.nan
    return (seen - birth).days / 365.25


def _date(value):
    text = str(value or "").strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None
