"""Conformal prediction intervals for BMD estimators, and referral at screening thresholds.

:class:`ConformalBMDRegressor` wraps any scikit-learn regressor (a bmdkit
estimator or a plain one) and adds ``predict_interval``. Two methods:

- ``"split"``: fit on part of the rows, score the absolute residuals of the
  held-out rest (the calibration rows), and widen every prediction by their
  ``ceil(confidence * (n + 1))``-th smallest value (Vovk et al. 2005;
  Lei et al. 2018).
- ``"cv+"``: fit one model per cross-validation fold, score each row's
  out-of-fold residual ``R_i``, and take the interval
  ``[q⁻{mu_-k(i)(x) - R_i}, q⁺{mu_-k(i)(x) + R_i}]`` over all rows ``i``,
  where ``mu_-k(i)`` is the model that did not see row ``i`` (CV+, and
  jackknife+ with one row per fold; Barber, Candès, Ramdas & Tibshirani 2021,
  Ann. Statist. 49(1)). The point prediction is the mean of the fold models.

What the coverage promises (see docs/uncertainty.md): if the calibration rows
and a new row are exchangeable (drawn alike from one population), the
interval contains the new row's true BMD with probability at least
``confidence`` for split conformal; for CV+ the worst case is
``2 * confidence - 1`` (jackknife+) less a term of order ``1/K`` for ``K``
folds (Barber et al., Theorem 4), and about ``confidence`` in practice. The
probability is over the draw of rows, i.e. *marginal*: it is not a promise
about any one subject, nor about a subgroup, another site or another device.

Referral: each prediction in g/cm², as a T-score (with its interval) and WHO
category; a row is referred ("refer to DXA") when its interval contains a
screening threshold, i.e. when the interval cannot tell on which side of the
threshold the subject lies. :func:`referral_analysis` measures what that
buys: the fraction referred and the sensitivity and specificity among the
rest. This module works on predictions only; it never imports torch.
"""

from __future__ import annotations

import json
import math
import numbers
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.model_selection import GroupShuffleSplit, train_test_split
from sklearn.utils.validation import check_is_fitted

from bmdkit.clinical import t_score, who_category
from bmdkit.errors import FileClashError, InputError, ParameterError, SavedFileError
from bmdkit.folds import run_folds, take_rows
from bmdkit.metrics import SCREENING_METRICS, has_t_score_reference, resolve_thresholds, site_names
from bmdkit.model_selection import BMDStratifiedKFold, quantile_bins
from bmdkit.params import Check, Interval, Options, check_param, validate_params

__all__ = [
    "CONFORMAL_FILE", "METHODS", "ConformalBMDRegressor", "conformal_interval", "conformal_rank",
    "cross_fit_intervals", "interval_metrics", "load", "prediction_frame", "refer",
    "referral_analysis",
    "referral_curve", "referral_frame",
]

#: Conformal methods of :class:`ConformalBMDRegressor`.
METHODS = ("split", "cv+")
#: File that marks a folder written by :meth:`ConformalBMDRegressor.save`.
CONFORMAL_FILE = "conformal.json"
_FORMAT = "bmdkit-conformal"
_CHUNK = 1 << 22  # values per block of the (calibration rows x new rows) matrix


#: What a confidence level (a coverage aimed at) may be (:mod:`bmdkit.params`).
CONFIDENCE = Interval(numbers.Real, 0, 1, closed="neither")


def _check_confidence(confidence, name="confidence"):
    return float(check_param(name, confidence, CONFIDENCE))


def conformal_rank(n, confidence):
    """Rank ``k = ceil(confidence * (n + 1))`` of the conformal quantile of ``n`` scores.

    The ``k``-th smallest of ``n`` calibration scores bounds a new
    exchangeable score with probability at least ``confidence``; when
    ``k > n`` no finite bound does (too few calibration rows), and the
    interval is infinite.

    Examples
    --------
    >>> conformal_rank(19, 0.9), conformal_rank(200, 0.9), conformal_rank(5, 0.9)
    (18, 181, 6)
    """
    confidence = _check_confidence(confidence)
    # rounded first so that 0.9 * 20 = 18.000000000000004 does not become 19
    return math.ceil(round(confidence * (n + 1), 9))


def conformal_interval(predictions, scores, confidence, score_model=None):
    """Conformal interval bounds from calibration scores (split conformal and CV+).

    Parameters
    ----------
    predictions : array-like of shape (m,) or (K, m)
        Predictions for ``m`` new rows by one model (split conformal) or by
        each of ``K`` fold models (CV+).
    scores : array-like of shape (n,)
        Absolute residuals ``|y_i - mu(x_i)|`` of the calibration rows, each
        from a model that did not see row ``i``.
    confidence : float in (0, 1)
    score_model : array-like of int of shape (n,) or None
        Which of the ``K`` models scored each calibration row (CV+);
        ``None``: model 0 for every row.

    Returns
    -------
    ndarray of shape (m, 2)
        Lower and upper bounds; ``±inf`` when there are too few calibration
        rows for ``confidence`` (see :func:`conformal_rank`).

    Examples
    --------
    Split conformal: 19 scores 0.01 ... 0.19 give the 18th smallest, 0.18.

    >>> conformal_interval([0.80, 0.90], np.arange(1, 20) / 100, 0.9).round(2).tolist()
    [[0.62, 0.98], [0.72, 1.08]]
    """
    confidence = _check_confidence(confidence)
    predictions = np.asarray(predictions, dtype=np.float64)
    predictions = predictions[None, :] if predictions.ndim == 1 else predictions
    scores = np.asarray(scores, dtype=np.float64).ravel()
    model = (np.zeros(len(scores), dtype=np.intp) if score_model is None
             else np.asarray(score_model, dtype=np.intp).ravel())
    if len(model) != len(scores):
        raise InputError(f"score_model has {len(model)} entries but there are {len(scores)} scores")
    if len(scores) and (model.min() < 0 or model.max() >= len(predictions)):
        raise InputError(f"score_model names models outside 0..{len(predictions) - 1}")
    if not np.isfinite(scores).all() or (scores < 0).any():
        raise InputError("calibration scores must be finite and non-negative")
    m = predictions.shape[1]
    bounds = np.empty((m, 2))
    k = conformal_rank(len(scores), confidence)
    if k > len(scores):
        bounds[:, 0], bounds[:, 1] = -np.inf, np.inf
        return bounds
    step = max(1, _CHUNK // max(len(scores), 1))
    for start in range(0, m, step):
        mu = predictions[model, start:start + step]  # (n, chunk): the model that left row i out
        upper = np.partition(mu + scores[:, None], k - 1, axis=0)[k - 1]
        lower = -np.partition(scores[:, None] - mu, k - 1, axis=0)[k - 1]
        bounds[start:start + step] = np.column_stack([lower, upper])
    return bounds


def cross_fit_intervals(predictions, confidence):
    """Intervals for out-of-fold predictions, each calibrated on the other folds' rows only.

    For a row in fold ``k``, the interval is its out-of-fold prediction
    ± the conformal quantile (:func:`conformal_rank`) of the out-of-fold
    absolute residuals of every row *not* in fold ``k``. No row calibrates
    its own interval, nor one of a row it shared a test fold with. This
    is how :func:`bmdkit.evaluation.compare_models` estimates coverage
    without refitting; the residuals come from models that saw fold ``k``'s
    rows, so the split-conformal guarantee holds only approximately (the
    models differ between folds).

    Parameters
    ----------
    predictions : pandas.DataFrame
        One model's out-of-fold predictions: ``fold``, ``row``, ``y_true``,
        ``y_pred`` (as in :attr:`ComparisonResults.predictions`).
    confidence : float in (0, 1)

    Returns
    -------
    ndarray of shape (len(predictions), 2)
        Lower and upper bounds, in the order of ``predictions``.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"fold": [0, 0, 1, 1], "row": [0, 1, 2, 3],
    ...                   "y_true": [1.0, 2.0, 3.0, 4.0], "y_pred": [1.1, 2.3, 2.9, 4.2]})
    >>> cross_fit_intervals(p, 0.5).round(2).tolist()
    [[0.9, 1.3], [2.1, 2.5], [2.6, 3.2], [3.9, 4.5]]
    """
    residual = np.abs(predictions["y_true"].to_numpy(np.float64)
                      - predictions["y_pred"].to_numpy(np.float64))
    rows, folds = predictions["row"].to_numpy(), predictions["fold"].to_numpy()
    bounds = np.empty((len(predictions), 2))
    for fold in np.unique(folds):
        test = folds == fold
        calibration = ~np.isin(rows, rows[test])
        bounds[test] = conformal_interval(predictions["y_pred"].to_numpy(np.float64)[test],
                                          residual[calibration], confidence)
    return bounds


def interval_metrics(y_true, lower, upper):
    """Empirical coverage and mean width (g/cm²) of intervals.

    Examples
    --------
    >>> {k: round(v, 3) for k, v in interval_metrics([0.8, 0.9], [0.7, 0.95], [0.9, 1.05]).items()}
    {'coverage': 0.5, 'interval_width': 0.15}
    """
    y_true, lower, upper = (np.asarray(a, dtype=np.float64).ravel() for a in (y_true, lower, upper))
    return {"coverage": float(np.mean((lower <= y_true) & (y_true <= upper))),
            "interval_width": float(np.mean(upper - lower))}


# -- referral ----------------------------------------------------------------------------
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


# -- the estimator -----------------------------------------------------------------------
def _targets(y, n_rows):
    """``y`` as float64 of shape (n,), or (n, k) for k >= 2 sites."""
    y = np.asarray(y, dtype=np.float64)
    y = y.ravel() if y.ndim < 2 or y.shape[1] == 1 else y
    if y.ndim != 1 and y.ndim != 2:
        raise InputError(f"y must be 1-D, or 2-D with one column per site; got shape {y.shape}")
    if len(y) != n_rows:
        raise InputError(f"X has {n_rows} rows but y has {len(y)} values")
    return y


def _check_regressor(estimator):
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise ParameterError(f"expected an estimator with fit and predict, got {estimator!r}")


def _check_splitter(cv):
    if isinstance(cv, str) or not hasattr(cv, "split"):
        raise ParameterError(f"expected a splitter with split(), got {cv!r}")


class ConformalBMDRegressor(RegressorMixin, BaseEstimator):
    """Conformal prediction intervals around any regressor (split conformal or CV+).

    Parameters
    ----------
    estimator : regressor
        Unfitted scikit-learn regressor (e.g. a bmdkit estimator); cloned for every fit.
    confidence : float in (0, 1), default=0.9
        Target marginal coverage of :meth:`predict_interval`.
    method : {"cv+", "split"}, default="cv+"
        ``"cv+"``: one fit per fold of ``cv``, every row calibrates (CV+,
        Barber et al. 2021). ``"split"``: one fit on ``1 - calibration_size``
        of the rows, the rest calibrate (cheaper, needs more rows).
    cv : int or splitter, default=5
        Folds of CV+: an int means ``BMDStratifiedKFold(cv, random_state=random_state)``;
        a splitter must put every row in exactly one test fold (pass
        ``BMDStratifiedGroupKFold`` with ``groups`` when subjects have several rows).
    calibration_size : float in (0, 1), default=0.2
        Share of rows held out for calibration by ``"split"``.
    random_state : int, RandomState or None, default=None
        Seeds the folds or the calibration split.
    n_jobs : int or None, default=None
        CV+ fits its fold models in parallel through joblib, by
        :func:`bmdkit.folds.run_folds` (``None`` is 1 unless a
        ``joblib.parallel_config`` says otherwise; each worker process runs
        torch with ``cpu_count() // n_jobs`` threads). Unused by ``"split"``.

    Attributes
    ----------
    estimators_ : list of fitted regressors
        The fold models (CV+) or the one model (split).
    calibration_scores_ : ndarray of shape (n_calibration,) or (n_calibration, k)
        Absolute residuals of the calibration rows, each by a model that did not see it
        (per site, for ``k`` sites).
    score_model_ : ndarray of int of shape (n_calibration,)
        Index in ``estimators_`` of the model that scored each calibration row.
    calibration_rows_ : ndarray of int of shape (n_calibration,)
        Positions in the training ``X`` of the calibration rows (CV+: every row).

    Notes
    -----
    Several sites (``y`` of shape (n, k)): every site is calibrated on its
    own residuals, so each site's interval has the marginal coverage
    guarantee; the ``k`` intervals of a row are not a joint region (all
    ``k`` covering at once is likelier than ``1 - k * (1 - confidence)`` but
    not promised to reach ``confidence``).

    Normalised scores (residuals divided by a difficulty estimate) are not
    offered: on the BoneQuality table (real) and the demo cohort's metadata
    (synthetic) they gave wider intervals and worse coverage across
    difficulty tertiles than the plain scores (docs/uncertainty.md).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 2)); y = 0.85 + 0.1 * X[:, 0] + rng.normal(0, 0.05, 400)
    >>> model = ConformalBMDRegressor(Ridge(), confidence=0.9, random_state=0)
    >>> model = model.fit(X[:300], y[:300])
    >>> lower, upper = model.predict_interval(X[300:]).T
    >>> bool(0.82 < np.mean((lower <= y[300:]) & (y[300:] <= upper)) < 0.98)
    True
    """

    #: What each parameter accepts (:mod:`bmdkit.params`), checked at ``fit``.
    _parameter_constraints = {
        "estimator": [Check(_check_regressor, "a scikit-learn regressor", ("model",))],
        "confidence": [CONFIDENCE],
        "method": [Options(METHODS)],
        "cv": [Interval(numbers.Integral, 2, None),
               Check(_check_splitter, "a splitter with split()", (2.5,))],
        "calibration_size": [CONFIDENCE],
        "random_state": [None, Interval(numbers.Integral, 0, 2**32 - 1), np.random.RandomState],
        "n_jobs": [None, Interval(numbers.Integral, None, None)],
    }

    def __init__(self, estimator, *, confidence=0.9, method="cv+", cv=5, calibration_size=0.2,
                 random_state=None, n_jobs=None):
        self.estimator = estimator
        self.confidence = confidence
        self.method = method
        self.cv = cv
        self.calibration_size = calibration_size
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _splits(self, X, y, groups):
        if self.method == "split":
            size = float(self.calibration_size)  # checked in fit
            index = np.arange(len(y))
            if groups is not None:
                splitter = GroupShuffleSplit(1, test_size=size, random_state=self.random_state)
                return [next(splitter.split(index, y, groups))]
            n_bins = max(1, min(5, int(len(y) * min(size, 1 - size)) // 2))
            train, test = train_test_split(index, test_size=size, random_state=self.random_state,
                                           stratify=quantile_bins(y if y.ndim == 1 else y[:, 0], n_bins)
                                           if n_bins > 1 else None)
            return [(np.sort(train), np.sort(test))]
        cv = self.cv
        if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
            cv = BMDStratifiedKFold(int(cv), random_state=self.random_state)
        splits = list(cv.split(X, y, groups))
        seen = np.bincount(np.concatenate([test for _, test in splits]), minlength=len(y))
        if not (seen == 1).all():
            raise ParameterError(f"cv={self.cv!r} must put every row in exactly one test fold for "
                             f"CV+; {int((seen != 1).sum())} rows are not (repeated splitters "
                             "do not work here)")
        return splits

    def fit(self, X, y, groups=None):
        """Fit the model(s) and score the calibration rows.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n, n_features)
        y : array-like of shape (n,) or (n, k)
            BMD in g/cm²; one column per site for ``k`` sites (calibrated
            each on its own, folds stratified on the first).
        groups : array-like of shape (n,) or None
            Subject ids: rows of one subject stay on one side of every split.

        Returns
        -------
        self
        """
        validate_params(self._parameter_constraints, self.get_params(deep=False))
        targets = _targets(y, len(X))
        splits = self._splits(X, targets, groups)
        # several sites as a DataFrame: the models learn their site names from its columns
        named = isinstance(y, pd.DataFrame) and targets.ndim == 2
        folds = list(run_folds({"conformal": self.estimator}, X, y if named else targets, splits,
                               keep_fitted=True, n_jobs=self.n_jobs,
                               description="conformal fits"))
        return self._conformalize([f.estimator for f in folds], [f.test for f in folds],
                                  [f.y_pred for f in folds], targets)

    def _conformalize(self, estimators, tests, predictions, y):
        """Score each calibration row by the model that did not see it (its ``predictions``)."""
        scores, model = [], []
        for k, (test, pred) in enumerate(zip(tests, predictions)):
            pred = pred.reshape(y[test].shape)
            scores.append(np.abs(y[test] - pred))
            model.append(np.full(len(test), k, dtype=np.intp))
        self.estimators_ = list(estimators)
        self.calibration_scores_ = np.concatenate(scores)
        self.score_model_ = np.concatenate(model)
        self.calibration_rows_ = np.concatenate(tests).astype(np.intp)
        return self

    @classmethod
    def from_cross_validate(cls, cv_results, X, y, *, confidence=0.9):
        """A fitted CV+ regressor from the fold models of ``sklearn.model_selection.cross_validate``.

        Reuses the cross-validation fits: no model is fitted again.

        Parameters
        ----------
        cv_results : dict
            Returned by ``cross_validate(..., return_estimator=True, return_indices=True)``
            with a splitter that puts every row in exactly one test fold.
        X, y
            The data ``cross_validate`` was run on.
        confidence : float in (0, 1), default=0.9

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.linear_model import Ridge
        >>> from sklearn.model_selection import cross_validate
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 2)); y = 0.85 + 0.1 * X[:, 0] + rng.normal(0, 0.05, 200)
        >>> res = cross_validate(Ridge(), X, y, cv=5, return_estimator=True, return_indices=True)
        >>> ConformalBMDRegressor.from_cross_validate(res, X, y).predict_interval(X[:1]).shape
        (1, 2)
        """
        missing = {"estimator", "indices"} - set(cv_results)
        if missing:
            raise ParameterError(f"cv_results lack {sorted(missing)}: run cross_validate with "
                             "return_estimator=True and return_indices=True")
        estimators, tests = cv_results["estimator"], cv_results["indices"]["test"]
        y = _targets(y, len(X))
        seen = np.bincount(np.concatenate(tests), minlength=len(y))
        if not (seen == 1).all():
            raise InputError("the cross-validation must put each of the rows of X, y in exactly "
                             "one test fold")
        model = cls(clone(estimators[0]), confidence=confidence, method="cv+", cv=len(tests))
        predictions = [np.asarray(fitted.predict(take_rows(X, test)), dtype=np.float64)
                       for fitted, test in zip(estimators, tests)]
        return model._conformalize(estimators, tests, predictions, y)

    def _model_predictions(self, X):
        check_is_fitted(self, "estimators_")
        return np.stack([np.asarray(m.predict(X), dtype=np.float64) for m in self.estimators_])

    def _interval(self, predictions, confidence):
        """Bounds from the models' predictions (K, n) or (K, n, k): shape (n, 2) or (n, k, 2)."""
        confidence = self.confidence if confidence is None else confidence
        scores = self.calibration_scores_
        if scores.ndim == 1:
            return conformal_interval(predictions, scores, confidence, self.score_model_)
        return np.stack([conformal_interval(predictions[..., j], scores[:, j], confidence,
                                            self.score_model_)
                         for j in range(scores.shape[1])], axis=1)

    @property
    def sites_(self):
        """Site names of the models (:attr:`bmdkit.BMDRegressor.sites_`), or ``None``."""
        check_is_fitted(self, "estimators_")
        return getattr(self.estimators_[0], "sites_", None)

    def predict(self, X):
        """Point predictions: the mean of the fold models (CV+) or the one model (split).

        Shape (n,), or (n, k) for ``k`` sites.
        """
        return self._model_predictions(X).mean(axis=0)

    def predict_interval(self, X, confidence=None):
        """Conformal prediction intervals, shape (n, 2): lower and upper bound in g/cm².

        For ``k`` sites, shape (n, k, 2): each site's interval, calibrated on its own.

        Parameters
        ----------
        X : DataFrame or array-like
        confidence : float in (0, 1) or None
            Default: the ``confidence`` the model was built with. Any level
            works without refitting: the calibration scores are kept.
        """
        return self._interval(self._model_predictions(X), confidence)

    def predict_referral(self, X, *, confidence=None, thresholds=None, site=None,
                         device="lunar", reference="nhanes3_female"):
        """Predictions, intervals, T-scores, WHO category and referral flag (:func:`prediction_frame`).

        The models predict once for the point prediction and the interval.
        ``site``: the site of the predictions, or of each of their columns;
        ``None``: the models' :attr:`sites_` for several sites, else the
        femoral neck.
        """
        return self.referral_from_predictions(
            self._model_predictions(X), confidence=confidence, thresholds=thresholds, site=site,
            device=device, reference=reference)

    def referral_from_predictions(self, predictions, *, confidence=None, thresholds=None,
                                  site=None, device="lunar", reference="nhanes3_female"):
        """:meth:`predict_referral` from the models' predictions, shape (n_models, n).

        For callers that run the models themselves, e.g. streaming prediction
        (:func:`bmdkit.inference.stream_predict` yields these per chunk).
        """
        predictions = np.asarray(predictions, dtype=np.float64)
        return prediction_frame(predictions.mean(axis=0), self._interval(predictions, confidence),
                                sites=self.sites_ if site is None else site,
                                thresholds=thresholds, device=device, reference=reference)

    # -- persistence: every model through bmdkit.persistence, the scores as JSON --------------
    def save(self, path, *, overwrite=False):
        """Save to the folder ``path``: each model via :func:`bmdkit.save`, the scores as JSON.

        Only bmdkit estimators can be saved (no pickle). The folder is
        written beside ``path`` and renamed into place, so a failure leaves
        nothing half-written. Restore with :func:`bmdkit.uncertainty.load`.
        """
        from bmdkit.persistence import META_FILE
        from bmdkit.persistence import save as save_model

        check_is_fitted(self, "estimators_")
        path = Path(path)
        saved = (path / CONFORMAL_FILE).is_file() or (path / META_FILE).is_file()
        if path.exists() and not (overwrite and saved):
            raise FileClashError(
                f"{path} exists; pass overwrite=True to replace a saved model" if saved
                else f"{path} exists and is not a saved bmdkit model")
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
        try:
            names = [f"model_{k}" for k in range(len(self.estimators_))]
            for name, fitted in zip(names, self.estimators_):
                save_model(fitted, tmp / name)
            meta = {"format": _FORMAT, "method": self.method,
                    "confidence": float(self.confidence), "models": names,
                    "calibration_scores": self.calibration_scores_.tolist(),
                    "score_model": self.score_model_.tolist(),
                    "calibration_rows": self.calibration_rows_.tolist()}
            (tmp / CONFORMAL_FILE).write_text(json.dumps(meta), encoding="utf-8")
            if path.exists():
                old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
                path.rename(old / "model")
                tmp.rename(path)
                shutil.rmtree(old)
            else:
                tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path


def load(path, *, device=None):
    """Load a :class:`ConformalBMDRegressor` written by :meth:`ConformalBMDRegressor.save`.

    Parameters
    ----------
    path : str or Path
    device : str or None
        Torch device of the models (default: the saved one).
    """
    from bmdkit import load as load_model  # persistence.load, the built-in estimators registered
    from bmdkit.persistence import read_description

    path = Path(path)
    meta_path = path / CONFORMAL_FILE
    meta = read_description(meta_path, fmt=_FORMAT, what="bmdkit conformal model")
    names = meta["models"]
    if not all(isinstance(n, str) and n.startswith("model_") and "/" not in n for n in names):
        raise SavedFileError(f"{meta_path} names unexpected model folders {names}")
    estimators = [load_model(path / name, device=device) for name in names]
    model = ConformalBMDRegressor(clone(estimators[0]), confidence=meta["confidence"],
                                  method=meta["method"], cv=len(names))
    model.estimators_ = estimators
    model.calibration_scores_ = np.asarray(meta["calibration_scores"], dtype=np.float64)
    model.score_model_ = np.asarray(meta["score_model"], dtype=np.intp)
    model.calibration_rows_ = np.asarray(meta["calibration_rows"], dtype=np.intp)
    if (len(model.score_model_) != len(model.calibration_scores_)
            or (len(names) and model.score_model_.max(initial=0) >= len(names))):
        raise SavedFileError(f"{meta_path} is inconsistent: scores and models do not match")
    return model
