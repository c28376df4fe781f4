"""The statistics of a model comparison: paired tests over folds and bootstrap intervals.

:func:`corrected_paired_ttest` (Nadeau & Bengio 2003) and the paired t- and
Wilcoxon tests compare each model's per-fold scores with the baseline's
(:func:`paired_tests`); :func:`bootstrap_intervals` resamples subjects for
percentile intervals of the pooled out-of-fold metrics, every resample at once
as a weighted metric (:func:`_resampled_metric`). They work on a
:class:`bmdkit.evaluation.ComparisonResults` through its public attributes and
methods only, and its methods of the same names call them. Imports no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from bmdkit.errors import ParameterError

__all__ = ["bootstrap_intervals", "corrected_paired_ttest", "paired_tests"]


def corrected_paired_ttest(differences, n_train, n_test):
    """Two-sided p-value of the corrected resampled t-test (Nadeau & Bengio 2003).

    Cross-validation folds share training rows, so the plain paired t-test
    over folds is too liberal; the correction inflates the variance by
    ``1/k + n_test/n_train``.

    Parameters
    ----------
    differences : array-like of shape (k,)
        Per-fold score differences between two models.
    n_train, n_test : float
        Training and test rows per fold (means over folds).

    Examples
    --------
    >>> round(corrected_paired_ttest([0.1, 0.2, 0.15, 0.12], n_train=90, n_test=10), 4)
    0.0121
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    k = len(d)
    if k < 2:
        return float("nan")
    variance = (1.0 / k + n_test / n_train) * np.var(d, ddof=1)
    if variance == 0:
        return float("nan") if np.mean(d) == 0 else 0.0
    t = np.mean(d) / np.sqrt(variance)
    return float(2 * stats.t.sf(abs(t), k - 1))


def _paired_pvalues(model, base):
    """p-values of paired t-test and Wilcoxon signed-rank over folds with both finite."""
    keep = np.isfinite(model) & np.isfinite(base)
    model, base = model[keep], base[keep]
    if len(model) < 2 or np.all(model == base):
        return float("nan"), float("nan")
    p_t = float(stats.ttest_rel(model, base).pvalue)
    p_w = float(stats.wilcoxon(model - base).pvalue)
    return p_t, p_w


def paired_tests(results, baseline=None, metrics=None):
    """Paired tests over folds of each model against the baseline, per metric
    (:meth:`bmdkit.evaluation.ComparisonResults.paired_tests`)."""
    baseline = results.resolve_baseline(baseline)
    n_train, n_test = results.fold_sizes()
    rows = []
    for metric in (m for m in results.metric_names if metrics is None or m in metrics):
        per_fold = results.per_fold(metric)
        base = per_fold[baseline].to_numpy()
        for model in results.model_names:
            if model == baseline:
                continue
            values = per_fold[model].to_numpy()
            diff = (values - base)[np.isfinite(values - base)]
            p_t, p_w = _paired_pvalues(values, base)
            rows.append(dict(
                model=model, metric=metric,
                mean_difference=float(diff.mean()) if diff.size else float("nan"),
                p_ttest=p_t, p_wilcoxon=p_w,
                p_corrected=corrected_paired_ttest(diff, n_train, n_test),
            ))
    return pd.DataFrame(rows)


def bootstrap_intervals(results, metrics, *, n_boot=1000, level=0.95, random_state=0):
    """Pooled out-of-fold metrics with percentile bootstrap intervals over subjects
    (:meth:`bmdkit.evaluation.ComparisonResults.bootstrap_intervals`)."""
    metrics = [m for m in metrics if m in results.metric_names]
    functions = {m: _resampled_metric(m, results.thresholds) for m in metrics}
    pooled = results.pooled_metrics()
    subjects = np.unique(results.predictions["row"])
    rng = np.random.default_rng(random_state)
    counts = np.stack([np.bincount(rng.integers(0, len(subjects), len(subjects)),
                                   minlength=len(subjects)) for _ in range(n_boot)])
    tail = 100 * (1 - level) / 2
    table = {}
    for model, part in results.predictions.groupby("model", sort=False):
        columns = [part[c].to_numpy(np.float64) if c in part else None
                   for c in ("y_true", "y_pred", "y_lower", "y_upper")]
        weights = counts[:, np.searchsorted(subjects, part["row"].to_numpy())].astype(float)
        row = {}
        for metric, function in functions.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                values = function(weights, *columns)
            values = values[np.isfinite(values)]
            low, high = (np.percentile(values, [tail, 100 - tail]) if len(values)
                         else (np.nan, np.nan))
            row.update({(metric, "estimate"): pooled.loc[model, metric],
                        (metric, "low"): low, (metric, "high"): high})
        table[model] = row
    frame = pd.DataFrame(table).T.reindex(results.model_names)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


def _resampled_metric(name, thresholds):
    """``f(W, y_true, y_pred, y_lower, y_upper)``: metric ``name`` of every bootstrap resample.

    ``W`` (n_boot, n) holds how often each prediction is drawn; the metric is
    its weighted form, so all resamples cost a few matrix products. With
    ``W`` all ones it equals :func:`bmdkit.metrics.compute_metrics` (tested).
    """
    def total(W, values):
        return W @ values / W.sum(axis=1)

    if name in ("mae", "mse"):
        power = 1 if name == "mae" else 2
        return lambda W, t, p, lo, hi: total(W, np.abs(p - t) ** power)
    if name == "r2":
        def r2(W, t, p, lo, hi):
            centred = t - t.mean()  # keeps the variance free of cancellation
            variance = total(W, centred ** 2) - total(W, centred) ** 2
            return 1 - total(W, (p - t) ** 2) / variance
        return r2
    if name == "coverage":
        return lambda W, t, p, lo, hi: total(W, ((lo <= t) & (t <= hi)).astype(float))
    if name == "interval_width":
        return lambda W, t, p, lo, hi: total(W, hi - lo)
    metric, _, label = name.partition("@")
    if metric in ("sensitivity", "specificity") and label in thresholds:
        positive = metric == "sensitivity"
        threshold = thresholds[label]

        def rate(W, t, p, lo, hi):
            members = ((t < threshold) == positive).astype(float)
            return W @ (members * ((p < threshold) == positive)) / (W @ members)
        return rate
    raise ParameterError(f"no bootstrap for metric {name!r}; known: mse, mae, r2, coverage, "
                         "interval_width, sensitivity@<threshold>, specificity@<threshold>")
