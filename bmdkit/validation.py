"""Strict checks of a cohort before anything is trained.

Each check looks at every row and raises one :class:`InputError` naming every
offending row, column or file, so one run shows all that needs fixing. The
estimators and :class:`~bmdkit.preprocessing.BMDPreprocessor` call them in
``fit`` before any training starts (unreadable and blank images are found by
:func:`bmdkit.io.load_images`, which decodes every file before raising).
Missing metadata values are not errors: they are imputed (numeric: median of
the training rows; categorical: an "unknown" code) and counted in an
:class:`ImputationWarning`.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

__all__ = [
    "ImputationWarning", "InputError", "TargetUnitWarning", "check_columns",
    "check_distinct_columns", "check_image_files", "check_numeric", "check_targets",
    "check_unique_columns", "numeric_like_columns", "warn_missing_values", "warn_target_units",
]


class InputError(ValueError):
    """Bad input data: every offending item is named in the message and in ``problems``.

    Parameters
    ----------
    summary : str
        What is wrong, e.g. ``"2 image files are missing"``.
    problems : dict
        Offending item (a row label, a column name, a path...) -> what is
        wrong with it. All of them are listed in the message.

    Examples
    --------
    >>> err = InputError("2 targets are not finite", {3: "nan", 7: "inf"})
    >>> print(err)
    2 targets are not finite:
      3: nan
      7: inf
    >>> isinstance(err, ValueError), err.problems[7]
    (True, 'inf')
    """

    def __init__(self, summary, problems):
        self.problems = dict(problems)
        lines = [f"  {item}: {why}" if why else f"  {item}" for item, why in self.problems.items()]
        super().__init__("\n".join([f"{summary}:", *lines]) if lines else summary)


class ImputationWarning(UserWarning):
    """Missing metadata values were imputed."""


class TargetUnitWarning(UserWarning):
    """The target does not look like femoral neck BMD in g/cm² (mg/cm², a T-score...)."""


def _raise_if(problems, noun, rest):
    """Raise an :class:`InputError` "<count> <noun(s)> <rest>" when there are problems."""
    if problems:
        n = len(problems)
        raise InputError(f"{n} {noun}{'' if n == 1 else 's'} {rest}", problems)


def check_targets(y, n_rows=None, *, multi_output=False):
    """``y`` as a float64 array, or an :class:`InputError` naming every bad value.

    Parameters
    ----------
    y : array-like of shape (n,), (n, 1) or (n, k)
        BMD in g/cm². A pandas Series or DataFrame is reported by its index
        labels (and column names). A column vector is flattened (with
        scikit-learn's ``DataConversionWarning``).
    n_rows : int or None
        Rows of X; a different length is an error.
    multi_output : bool, default=False
        Accept ``(n, k)`` targets with k >= 2 (several BMD sites).

    Returns
    -------
    ndarray of shape (n,) or (n, k), float64

    Examples
    --------
    >>> check_targets([0.8, 0.9], 2).tolist()
    [0.8, 0.9]
    >>> check_targets([0.8, float("nan"), "n/a"])
    Traceback (most recent call last):
    ...
    bmdkit.validation.InputError: 2 target values missing, not a number or infinite (row: value):
      1: nan
      2: 'n/a'
    >>> import pandas as pd
    >>> check_targets(pd.DataFrame({"neck": [0.8, 0.7], "hip": [0.9, None]}), multi_output=True)
    Traceback (most recent call last):
    ...
    bmdkit.validation.InputError: 1 target value missing, not a number or infinite (row, column: value):
      1, 'hip': nan
    """
    if y is None:
        raise InputError("requires y to be passed, but the target y is None", {})
    labels = y.index if isinstance(y, (pd.Series, pd.DataFrame)) else None
    columns = list(y.columns) if isinstance(y, pd.DataFrame) else None
    raw = np.asarray(y, dtype=object)
    if raw.ndim == 2 and raw.shape[1] == 1:
        from sklearn.exceptions import DataConversionWarning  # here: image workers skip sklearn

        warnings.warn(
            "A column-vector y was passed when a 1d array was expected; it is flattened",
            DataConversionWarning, stacklevel=3,
        )
        raw = raw[:, 0]
    if raw.ndim != 1 and not (multi_output and raw.ndim == 2):
        raise InputError("y must be 1-D, one BMD value per row" + (
            ", or 2-D, one column per site" if multi_output else ""), {"shape": raw.shape})
    if n_rows is not None and len(raw) != n_rows:
        raise InputError("X and y differ in length", {"X rows": n_rows, "y values": len(raw)})
    values = pd.DataFrame(raw.reshape(len(raw), -1)).apply(
        pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    rows, cols = np.nonzero(~np.isfinite(values))
    labels = range(len(raw)) if labels is None else labels
    if raw.ndim == 1:
        _raise_if({labels[i]: repr(raw[i]) for i in rows}, "target value",
                  "missing, not a number or infinite (row: value)")
        return values[:, 0]
    columns = range(raw.shape[1]) if columns is None else columns
    _raise_if({f"{labels[i]}, {columns[j]!r}": repr(raw[i, j]) for i, j in zip(rows, cols)},
              "target value", "missing, not a number or infinite (row, column: value)")
    return values


#: Femoral neck BMD in g/cm² lies well inside this range (the lowest and highest values
#: seen in adults are about 0.3 and 1.6).
PLAUSIBLE_BMD = (0.1, 3.0)


def warn_target_units(y):
    """Warn with a :class:`TargetUnitWarning` when ``y`` does not look like BMD in g/cm².

    A median in the hundreds is BMD in mg/cm²; negative values are T- or
    Z-scores; any other median outside :data:`PLAUSIBLE_BMD` is named too.
    Returns the likely unit, or None when ``y`` looks like g/cm².

    Examples
    --------
    >>> import warnings
    >>> warn_target_units([0.71, 0.85, 1.02]) is None
    True
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_target_units([710.0, 850.0, 1020.0])
    'mg/cm²'
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    y looks like BMD in mg/cm² (median 850), not g/cm²: divide it by 1000...
    """
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        return None
    median = float(np.median(y))
    low, high = PLAUSIBLE_BMD
    if median >= 100:
        unit, what, advice = "mg/cm²", "BMD in mg/cm²", "divide it by 1000"
    elif (y < 0).any():
        unit, what, advice = "T-score", "T-scores or Z-scores (negative values)", (
            "pass the measured BMD instead (bmdkit.clinical.bmd_at_t_score converts T-scores "
            "for a known device and reference)")
    elif not low <= median <= high:
        unit, what, advice = "unknown", "values in another unit", (
            f"femoral neck BMD in g/cm² lies within {low}-{high}")
    else:
        return None
    warnings.warn(
        f"y looks like {what} (median {median:.4g}), not g/cm²: {advice}; screening "
        "thresholds, T-scores and WHO categories assume g/cm²", TargetUnitWarning, stacklevel=3)
    return unit


def check_columns(X, columns, *, role="column"):
    """Raise an :class:`InputError` naming every one of ``columns`` absent from ``X``.

    Examples
    --------
    >>> import pandas as pd
    >>> check_columns(pd.DataFrame({"age": [70]}), ["image_path", "age", "sex"], role="X column")
    Traceback (most recent call last):
    ...
    bmdkit.validation.InputError: 2 X columns not found (X has: ['age']):
      'image_path'
      'sex'
    """
    missing = [c for c in columns if c not in X.columns]
    _raise_if({repr(c): "" for c in missing}, role,
              f"not found (X has: {[str(c) for c in X.columns]})")


def check_distinct_columns(numeric, categorical):
    """Raise an :class:`InputError` naming every column listed twice or in both roles.

    Examples
    --------
    >>> check_distinct_columns(["age", "grade"], ["grade", "sex", "sex"])
    Traceback (most recent call last):
    ...
    bmdkit.validation.InputError: 2 columns named twice (both numeric_cols and categorical_cols, or twice in one):
      'grade': numeric and categorical
      'sex': listed 2 times in categorical_cols
    """
    problems = {}
    for role, columns in (("numeric_cols", numeric), ("categorical_cols", categorical)):
        for column, count in pd.Series(list(columns), dtype=object).value_counts().items():
            if count > 1:
                problems[repr(column)] = f"listed {count} times in {role}"
    for column in dict.fromkeys(c for c in numeric if c in set(categorical)):
        problems[repr(column)] = "numeric and categorical"
    _raise_if(dict(sorted(problems.items())), "column",
              "named twice (both numeric_cols and categorical_cols, or twice in one)")


def check_unique_columns(X):
    """Raise an :class:`InputError` naming every column name that ``X`` has more than once.

    Examples
    --------
    >>> import pandas as pd
    >>> check_unique_columns(pd.DataFrame([[1, 2, 3]], columns=["age", "bmi", "age"]))
    Traceback (most recent call last):
    ...
    bmdkit.validation.InputError: 1 column name appears more than once in X (name: count):
      'age': 2
    """
    counts = pd.Series(list(X.columns), dtype=object).value_counts(sort=False)
    _raise_if({repr(c): int(k) for c, k in counts.items() if k > 1}, "column name",
              "appears more than once in X (name: count)")


def check_numeric(X, columns):
    """Raise an :class:`InputError` naming every non-numeric or infinite cell of ``columns``.

    Missing values (NaN, None) are allowed: they are imputed.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"age": [70, "seventy", None], "bmi": [25.0, 27.0, float("inf")]})
    >>> check_numeric(X, ["age", "bmi"])
    Traceback (most recent call last):
    ...
    bmdkit.validation.InputError: 2 values in numeric columns not a finite number (row, column: value):
      1, 'age': 'seventy'
      2, 'bmi': inf
    """
    columns = list(columns)
    raw = X[columns].astype(object)
    values = raw.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    bad = (values.isna() & raw.notna()) | np.isinf(values)
    rows, cols = np.nonzero(bad.to_numpy())  # row-major: sorted by row, then column
    _raise_if({f"{X.index[r]}, {columns[c]!r}": repr(raw.iat[r, c]) for r, c in zip(rows, cols)},
              "value", "in numeric columns not a finite number (row, column: value)")


def numeric_like_columns(X, columns, *, min_fraction=0.9):
    """Those of ``columns`` holding text that is mostly numbers (a CSV's ``"?"`` among ages).

    A column qualifies when it has object or string dtype and at least
    ``min_fraction`` of its non-missing values parse as numbers, but not all.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"age": ["71", "?"] + ["75"] * 18, "sex": ["F", "M"] * 10})
    >>> numeric_like_columns(X, ["age", "sex"])
    ['age']
    """
    found = []
    for column in columns:
        values = X[column].dropna()
        if values.empty or not (pd.api.types.is_object_dtype(values)
                                or pd.api.types.is_string_dtype(values)):
            continue
        parsed = pd.to_numeric(values.astype(object), errors="coerce").notna().mean()
        if min_fraction <= parsed < 1:
            found.append(column)
    return found


def check_image_files(paths, index=None):
    """Raise an :class:`InputError` naming every path that is not a readable file.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
    index : sequence or None
        Row labels to report (default: positions).
    """
    index = range(len(paths)) if index is None else index
    problems = {}
    for label, path in zip(index, paths):
        if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
            problems[f"row {label}"] = f"no image path ({path!r})"
        elif not os.path.isfile(path):
            problems[f"row {label}: {os.fspath(path)}"] = (
                "is a folder" if os.path.isdir(path) else "file not found")
        elif not os.access(path, os.R_OK):
            problems[f"row {label}: {os.fspath(path)}"] = "not readable (permissions)"
    _raise_if(problems, "image file", "cannot be read")


def warn_missing_values(X, columns):
    """Warn, once, how many values of ``columns`` are missing and will be imputed.

    Returns the number of missing values.
    """
    counts = X[list(columns)].isna().sum()
    counts = counts[counts > 0]
    total = int(counts.sum())
    if total:
        detail = ", ".join(f"{c}: {int(k)}" for c, k in counts.items())
        warnings.warn(
            f"imputed {total} missing metadata value{'s' if total != 1 else ''} ({detail}); "
            "numeric columns get the median of the training rows, categorical ones an "
            "'unknown' code", ImputationWarning, stacklevel=2)
    return total
