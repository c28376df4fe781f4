"""Strict checks of a cohort before anything is trained.

Each check looks at every row and raises one :class:`InputError` naming every
offending row, column or file, and :func:`check_all` joins the problems of
several checks into one error, so one run shows all that needs fixing. The
estimators and :class:`~bmdkit.preprocessing.BMDPreprocessor` call them in
``fit`` before any training starts (unreadable and blank images are found by
:func:`bmdkit.io.load_images`, which decodes every file before raising).
Warnings name what is accepted but suspicious: imputed values
(:class:`ImputationWarning`), targets in another unit
(:class:`TargetUnitWarning`), columns that look like identifiers or copies
of the target (:class:`InputColumnWarning`).
Missing metadata values are not errors: they are imputed (numeric: median of
the training rows; categorical: an "unknown" code) and counted in an
:class:`ImputationWarning`.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

from bmdkit.errors import InputError

__all__ = [
    "ImputationWarning", "InputColumnWarning", "InputError", "TargetUnitWarning", "check_all",
    "check_columns", "check_distinct_columns", "check_image_paths", "check_no_datetimes",
    "check_numeric",
    "check_targets", "check_unique_columns", "image_path_problem", "image_problem_key",
    "is_missing_path",
    "numeric_like_columns", "suspicious_columns", "warn_input_columns", "warn_missing_values",
    "warn_target_units",
]


class ImputationWarning(UserWarning):
    """Missing metadata values were imputed."""


class InputColumnWarning(UserWarning):
    """A column looks like an identifier or a copy of the target, not a model input."""


class TargetUnitWarning(UserWarning):
    """The target does not look like femoral neck BMD in g/cm² (mg/cm², a T-score...)."""


def check_all(*checks):
    """Run every check; one :class:`InputError` names the problems of all that failed.

    Parameters
    ----------
    *checks : callable
        Called without arguments; each may raise an :class:`InputError`.

    Returns
    -------
    list
        What each check returned (when none failed).

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"age": [70, "old"]})
    >>> check_all(lambda: check_columns(X, ["sex"]), lambda: check_numeric(X, ["age"]))
    Traceback (most recent call last):
    ...
    bmdkit.errors.InputError: 1 column not found (X has: ['age']); 1 value in numeric columns not a finite number (row, column: value):
      'sex'
      1, 'age': 'old'
    """
    results, errors = [], []
    for check in checks:
        try:
            results.append(check())
        except InputError as error:
            errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InputError("; ".join(e.summary for e in errors),
                         {k: v for e in errors for k, v in e.problems.items()})
    return results


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
    bmdkit.errors.InputError: 2 target values missing, not a number or infinite (row: value):
      1: nan
      2: 'n/a'
    >>> import pandas as pd
    >>> check_targets(pd.DataFrame({"neck": [0.8, 0.7], "hip": [0.9, None]}), multi_output=True)
    Traceback (most recent call last):
    ...
    bmdkit.errors.InputError: 1 target value missing, not a number or infinite (row, column: value):
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


#: |Pearson r| with the target from which a column is named as a likely leak.
LEAK_CORRELATION = 0.95
#: Rows from which a column with a different value in every row is named as an identifier.
MIN_ROWS_FOR_ID = 10


def suspicious_columns(X, y):
    """``{column: why}`` for columns of ``X`` that look like no model input.

    Identifiers: a different value in every row that is text (names, ids,
    dates as text) or whole numbers in increasing or decreasing order
    (record numbers), from :data:`MIN_ROWS_FOR_ID` rows. Leaks: a numeric
    column whose correlation with ``y`` reaches :data:`LEAK_CORRELATION` in
    absolute value (another BMD site, a T-score, the target in another unit).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> y = np.linspace(0.6, 1.1, 12)
    >>> X = pd.DataFrame({"record": np.arange(1000, 1012), "age": np.tile([70.0, 75, 80], 4),
    ...                   "t_score": (y - 1.038) / 0.139})
    >>> sorted(suspicious_columns(X, y))
    ['record', 't_score']
    """
    y = np.asarray(y, dtype=np.float64)
    found = {}
    n = len(X)
    for column in X.columns:
        values = X[column]
        present = values.dropna()
        unique = n >= MIN_ROWS_FOR_ID and len(present) == n and present.nunique() == n
        if pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_numeric_dtype(values):
            numbers = present.to_numpy(dtype=np.float64)
            if unique and np.all(numbers == np.round(numbers)) and (
                    present.is_monotonic_increasing or present.is_monotonic_decreasing):
                found[column] = "a different whole number in every row, in order: a record id?"
                continue
            keep = values.notna().to_numpy() & np.isfinite(y)
            if keep.sum() >= 3 and np.std(numbers) > 0:
                r = float(np.corrcoef(values.to_numpy(dtype=np.float64)[keep], y[keep])[0, 1])
                if abs(r) >= LEAK_CORRELATION:
                    found[column] = (f"correlates with the target at r = {r:.3f}: another BMD "
                                     "site, a T-score or the target in another unit?")
        elif unique:
            found[column] = "a different text in every row: an identifier, a name or a date?"
    return found


def warn_input_columns(X, y):
    """Warn, in one :class:`InputColumnWarning`, about every column :func:`suspicious_columns`
    finds; return them (``{column: why}``)."""
    found = suspicious_columns(X, y)
    if found:
        detail = "; ".join(f"{c!r}: {why}" for c, why in found.items())
        warnings.warn(
            f"{len(found)} column{'s' if len(found) != 1 else ''} of X look{'s' if len(found) == 1 else ''} "
            f"like no model input ({detail}). Every column but the image path becomes an input: "
            "leave such columns out (load_cohort(exclude=...), bmdkit --drop COL) unless they "
            "are meant as inputs", InputColumnWarning, stacklevel=3)
    return found


def check_columns(X, columns, *, role="column"):
    """Raise an :class:`InputError` naming every one of ``columns`` absent from ``X``.

    Examples
    --------
    >>> import pandas as pd
    >>> check_columns(pd.DataFrame({"age": [70]}), ["image_path", "age", "sex"], role="X column")
    Traceback (most recent call last):
    ...
    bmdkit.errors.InputError: 2 X columns not found (X has: ['age']):
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
    bmdkit.errors.InputError: 2 columns named twice (both numeric_cols and categorical_cols, or twice in one):
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


def check_no_datetimes(X, columns):
    """Raise an :class:`InputError` naming every date/time column among ``columns``.

    A date would become a category per value; the network needs a number
    derived from it (an age, days since an event).

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"scan": pd.to_datetime(["2020-01-02"]), "sex": ["F"]})
    >>> check_no_datetimes(X, ["scan", "sex"])
    Traceback (most recent call last):
    ...
    bmdkit.errors.InputError: 1 date/time column cannot be a model input: derive a number from it (e.g. an age) or drop it:
      'scan': datetime64[us]
    """
    found = {repr(c): str(X[c].dtype) for c in columns
             if pd.api.types.is_datetime64_any_dtype(X[c])
             or pd.api.types.is_timedelta64_dtype(X[c])}
    _raise_if(found, "date/time column",
              "cannot be a model input: derive a number from it (e.g. an age) or drop it")


def check_unique_columns(X):
    """Raise an :class:`InputError` naming every column name that ``X`` has more than once.

    Examples
    --------
    >>> import pandas as pd
    >>> check_unique_columns(pd.DataFrame([[1, 2, 3]], columns=["age", "bmi", "age"]))
    Traceback (most recent call last):
    ...
    bmdkit.errors.InputError: 1 column name appears more than once in X (name: count):
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
    bmdkit.errors.InputError: 2 values in numeric columns not a finite number (row, column: value):
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


def is_missing_path(path):
    """Whether ``path`` names no file at all: empty or blank, None, NaN (a row without an image).

    Examples
    --------
    >>> [is_missing_path(p) for p in ("", "  ", None, float("nan"), "a.png")]
    [True, True, True, True, False]
    """
    return not isinstance(path, (str, os.PathLike)) or not str(path).strip()


def image_path_problem(path):
    """Why ``path`` is not a readable, non-empty image file, or None.

    No path (empty, None, NaN), a missing file, a folder, a file without read
    permission and an empty (0-byte) file are problems.

    Examples
    --------
    >>> image_path_problem(""), image_path_problem("/no/such/file.png")
    ("no image path ('')", 'file not found')
    """
    if is_missing_path(path):
        return f"no image path ({path!r})"
    if not os.path.isfile(path):
        return "is a folder" if os.path.isdir(path) else "file not found"
    if not os.access(path, os.R_OK):
        return "not readable (permissions)"
    if os.path.getsize(path) == 0:
        return "empty file (0 bytes)"
    return None


def image_problem_key(label, path):
    """How a bad image is named in an :class:`InputError`: its row and path."""
    if is_missing_path(path):
        return f"row {label}"
    return f"row {label}: {os.fspath(path)}"



def check_image_paths(paths, index):
    """One :class:`InputError` naming every path that is not a readable, non-empty file.

    Nothing is decoded: this is the check that runs before any work starts.
    """
    problems = {image_problem_key(label, path): why for label, path in zip(index, paths)
                if (why := image_path_problem(path)) is not None}
    if problems:
        n = len(problems)
        raise InputError(f"{n} image file{'s' if n != 1 else ''} cannot be read", problems)


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
