"""Conformal arithmetic: interval bounds from calibration scores, and their coverage.

Split conformal (Vovk et al. 2005; Lei et al. 2018) widens a prediction by the
``ceil(confidence * (n + 1))``-th smallest of ``n`` calibration scores
(:func:`conformal_rank`, :func:`conformal_interval`); CV+ (Barber, Candès,
Ramdas & Tibshirani 2021) takes the quantiles of ``mu_-k(i)(x) ± R_i`` over
every calibration row (:func:`conformal_interval` with ``score_model``, and
:func:`cross_fit_intervals` for out-of-fold predictions). Numbers only: the
estimator that fits the models is :class:`bmdkit.uncertainty.ConformalBMDRegressor`,
what the intervals mean is in docs/uncertainty.md. Imports no torch.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from bmdkit.errors import InputError
from bmdkit.params import Interval, check_param

__all__ = ["CONFIDENCE", "conformal_interval", "conformal_rank", "cross_fit_intervals",
           "interval_metrics"]

_CHUNK = 1 << 22  # values per block of the (calibration rows x new rows) matrix


#: What a confidence level (a coverage aimed at) may be (:mod:`bmdkit.params`).
CONFIDENCE = Interval(numbers.Real, 0, 1, closed="neither")


def _check_confidence(confidence):
    return float(check_param("confidence", confidence, CONFIDENCE))


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
