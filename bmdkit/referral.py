"""Referral to DXA at screening thresholds: predictions and intervals as a clinical table.

Each prediction in g/cm², as a T-score (with its interval) and WHO category; a
row is referred ("refer to DXA") when its interval contains a screening
threshold, i.e. when the interval cannot tell on which side of the threshold
the subject lies (:func:`refer`, :func:`prediction_frame`,
:func:`referral_frame`). :func:`referral_analysis` measures what that buys:
the fraction referred and the sensitivity and specificity among the rest;
:func:`referral_curve` does so at several interval levels. Imports no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bmdkit.clinical import t_score, who_category
from bmdkit.conformal import cross_fit_intervals
from bmdkit.metrics import SCREENING_METRICS, has_t_score_reference, resolve_thresholds, site_names

__all__ = ["REFERRAL_CONFIDENCES", "prediction_frame", "refer", "referral_analysis",
           "referral_curve", "referral_frame"]

def refer(lower, upper, thresholds):
    """Rows whose interval contains a screening threshold: the interval cannot tell the side.

    A case is positive when its BMD is strictly below a threshold (as in
    :mod:`bmdkit.metrics`), so an interval ``[lower, upper]`` is undecided
    about threshold ``t`` when ``lower < t <= upper``.

    Parameters
    ----------
    lower, upper : array-like of shape (n,)
        Interval bounds in g/cm².
    thresholds : dict of str to float, or sequence of float
        BMD thresholds in g/cm² (e.g. :func:`bmdkit.clinical.screening_thresholds`).

    Returns
    -------
    ndarray of bool of shape (n,)

    Examples
    --------
    >>> from bmdkit.clinical import screening_thresholds
    >>> refer([0.85, 0.92, 0.60], [0.95, 0.99, 0.80], screening_thresholds()).tolist()
    [True, False, True]
    """
    lower = np.asarray(lower, dtype=np.float64).ravel()
    upper = np.asarray(upper, dtype=np.float64).ravel()
    values = thresholds.values() if isinstance(thresholds, dict) else thresholds
    referred = np.zeros(len(lower), dtype=bool)
    for threshold in values:
        referred |= (lower < threshold) & (threshold <= upper)
    return referred


def _site_columns(y_pred, intervals, thresholds, clinical):
    """Result columns of one site: BMD (and interval), T-score, WHO category, referral."""
    columns = {"predicted_bmd": y_pred}
    if intervals is not None:
        columns.update(bmd_lower=intervals[:, 0], bmd_upper=intervals[:, 1])
    if not has_t_score_reference(clinical["site"], device=clinical["device"],
                                 reference=clinical["reference"]):
        return columns  # no young-adult reference at this site: BMD only
    t = t_score(y_pred, **clinical)
    columns["t_score"] = t
    if intervals is not None:
        # T is increasing in BMD (positive sBMD slope), so the bounds map to bounds
        columns.update(t_score_lower=t_score(intervals[:, 0], **clinical),
                       t_score_upper=t_score(intervals[:, 1], **clinical))
    columns["who_category"] = who_category(t)
    if intervals is not None:
        columns["refer"] = refer(intervals[:, 0], intervals[:, 1],
                                 resolve_thresholds(thresholds, **clinical))
    return columns


def prediction_frame(y_pred, intervals=None, *, sites=None, thresholds=None, device="lunar",
                     reference="nhanes3_female"):
    """Predictions as a table: BMD, T-score, WHO category, and with intervals their bounds and
    the referral flag; one set of columns per site for several sites.

    Parameters
    ----------
    y_pred : array-like of shape (n,) or (n, k)
        Predicted BMD in g/cm², of one site or of ``k`` sites.
    intervals : array-like of shape (n, 2) or (n, k, 2), or None
        Lower and upper bounds (:meth:`ConformalBMDRegressor.predict_interval`).
    sites : str, sequence of str or None
        The site of ``y_pred`` (default ``"femoral_neck"``), or of each of
        its ``k`` columns (e.g. :attr:`BMDRegressor.sites_ <bmdkit.BMDRegressor>`).
    thresholds : dict or None
        Screening thresholds (:func:`bmdkit.metrics.resolve_thresholds`;
        ``None``: T = -1 and T = -2.5 on ``device``); for several sites
        ``{site: thresholds}``.
    device, reference
        See :func:`bmdkit.clinical.t_score`.

    Returns
    -------
    pandas.DataFrame
        One site: ``predicted_bmd``, with intervals ``bmd_lower`` and
        ``bmd_upper``, then ``t_score`` (with intervals ``t_score_lower``,
        ``t_score_upper``), ``who_category`` (of the point prediction) and
        with intervals ``refer`` (:func:`refer` at the thresholds). Several
        sites: the same columns named ``"<site>/<column>"`` per site (the
        metrics' naming, :mod:`bmdkit.metrics`), T-score, WHO and referral
        columns only for sites with a T-score reference
        (:func:`bmdkit.metrics.has_t_score_reference`), and with intervals
        ``refer``: referred at any site.

    Examples
    --------
    >>> prediction_frame([0.95, 0.70]).round(2).values.tolist()
    [[0.95, -0.63, 'normal'], [0.7, -2.43, 'osteopenia']]
    >>> frame = prediction_frame([[0.95, 1.1]], [[[0.9, 1.0], [1.0, 1.2]]],
    ...                          sites=["femoral_neck", "lumbar_spine"])
    >>> list(frame.columns)  # doctest: +NORMALIZE_WHITESPACE
    ['femoral_neck/predicted_bmd', 'femoral_neck/bmd_lower', 'femoral_neck/bmd_upper',
     'femoral_neck/t_score', 'femoral_neck/t_score_lower', 'femoral_neck/t_score_upper',
     'femoral_neck/who_category', 'femoral_neck/refer', 'lumbar_spine/predicted_bmd',
     'lumbar_spine/bmd_lower', 'lumbar_spine/bmd_upper', 'refer']
    """
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_pred = y_pred.reshape(len(y_pred), -1)
    k = y_pred.shape[1]
    if intervals is not None:
        intervals = np.asarray(intervals, dtype=np.float64).reshape(len(y_pred), k, 2)
    sites = "femoral_neck" if sites is None else sites
    if k == 1:  # one site: the columns are not prefixed
        site = sites if isinstance(sites, str) else site_names(sites, 1)[0]
        return pd.DataFrame(_site_columns(
            y_pred[:, 0], None if intervals is None else intervals[:, 0], thresholds,
            dict(site=site, device=device, reference=reference)))
    names = site_names(sites, k)
    columns = {}
    for j, name in enumerate(names):
        clinical = dict(site=name, device=device, reference=reference)
        part = _site_columns(y_pred[:, j], None if intervals is None else intervals[:, j],
                             (thresholds or {}).get(name), clinical)
        columns.update({f"{name}/{column}": values for column, values in part.items()})
    if intervals is not None:
        referred = [v for c, v in columns.items() if c.endswith("/refer")]
        columns["refer"] = np.any(referred, axis=0) if referred else np.zeros(len(y_pred), bool)
    return pd.DataFrame(columns)


def referral_frame(y_pred, intervals, *, thresholds=None, site="femoral_neck", device="lunar",
                   reference="nhanes3_female"):
    """Predictions with intervals in g/cm² and T-score, WHO category and referral flag.

    :func:`prediction_frame` with intervals, for one site.

    Parameters
    ----------
    y_pred : array-like of shape (n,)
        Predicted BMD in g/cm².
    intervals : array-like of shape (n, 2)
        Lower and upper bounds (e.g. :meth:`ConformalBMDRegressor.predict_interval`).
    thresholds : dict or None
        Screening thresholds (:func:`bmdkit.metrics.resolve_thresholds`;
        ``None``: T = -1 and T = -2.5 on ``device``).
    site, device, reference
        See :func:`bmdkit.clinical.t_score`.

    Returns
    -------
    pandas.DataFrame
        ``predicted_bmd``, ``bmd_lower``, ``bmd_upper``, ``t_score``,
        ``t_score_lower``, ``t_score_upper``, ``who_category`` (of the point
        prediction) and ``refer`` (:func:`refer` at the thresholds).

    Examples
    --------
    >>> frame = referral_frame([0.95, 0.70], [[0.90, 1.00], [0.62, 0.78]])
    >>> frame[["t_score", "who_category", "refer"]].round(2).values.tolist()
    [[-0.63, 'normal', False], [-2.43, 'osteopenia', True]]
    """
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    return prediction_frame(y_pred, np.asarray(intervals, dtype=np.float64).reshape(-1, 2),
                            sites=site, thresholds=thresholds, device=device,
                            reference=reference)


def referral_analysis(y_true, y_pred, intervals, thresholds):
    """What referring undecided rows to DXA buys, at each screening threshold.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        DXA and predicted BMD in g/cm².
    intervals : array-like of shape (n, 2)
    thresholds : dict of str to float

    Returns
    -------
    pandas.DataFrame
        One row per threshold: ``referred`` (fraction of rows whose interval
        contains it), ``sensitivity_rest`` / ``specificity_rest`` (screening
        by the point prediction among the rows not referred),
        ``sensitivity_all`` / ``specificity_all`` (all rows, no referral) and
        ``n_rest``.

    Examples
    --------
    >>> y = [0.70, 0.80, 0.95, 1.00]; p = [0.75, 0.92, 0.93, 1.05]
    >>> iv = [[0.7, 0.8], [0.85, 0.99], [0.90, 0.96], [1.0, 1.1]]
    >>> referral_analysis(y, p, iv, {"T=-1": 0.899}).round(2).values.tolist()
    [[0.25, 1.0, 1.0, 0.5, 1.0, 3.0]]
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    intervals = np.asarray(intervals, dtype=np.float64).reshape(len(y_pred), 2)
    sensitivity, specificity = SCREENING_METRICS["sensitivity"][0], SCREENING_METRICS["specificity"][0]
    rows = {}
    for label, threshold in thresholds.items():
        rest = ~refer(intervals[:, 0], intervals[:, 1], [threshold])
        rows[label] = {
            "referred": float(np.mean(~rest)),
            "sensitivity_rest": sensitivity(y_true[rest], y_pred[rest], threshold),
            "specificity_rest": specificity(y_true[rest], y_pred[rest], threshold),
            "sensitivity_all": sensitivity(y_true, y_pred, threshold),
            "specificity_all": specificity(y_true, y_pred, threshold),
            "n_rest": int(rest.sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


#: Interval levels of :func:`referral_curve` by default.
REFERRAL_CONFIDENCES = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def referral_curve(predictions, thresholds, confidences=REFERRAL_CONFIDENCES):
    """:func:`referral_analysis` of out-of-fold predictions at several confidence levels.

    Wider intervals refer more rows and leave the rest easier to screen:
    this traces the trade-off, with intervals from :func:`cross_fit_intervals`.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One model's out-of-fold predictions (``fold``, ``row``, ``y_true``, ``y_pred``).
    thresholds : dict of str to float
    confidences : sequence of float, default=0.50, 0.55, ..., 0.95

    Returns
    -------
    pandas.DataFrame
        ``confidence``, ``threshold`` and the columns of :func:`referral_analysis`.
    """
    frames = []
    for confidence in confidences:
        intervals = cross_fit_intervals(predictions, round(float(confidence), 6))
        table = referral_analysis(predictions["y_true"], predictions["y_pred"], intervals,
                                  thresholds)
        frames.append(table.rename_axis("threshold").reset_index()
                      .assign(confidence=round(float(confidence), 6)))
    columns = ["confidence", "threshold"]
    frame = pd.concat(frames, ignore_index=True)
    return frame[columns + [c for c in frame.columns if c not in columns]]
