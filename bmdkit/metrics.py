"""Regression, agreement and screening metrics for predicted BMD, and sklearn scorers.

Regression: MSE, MAE, RMSE, R², Pearson r; agreement (Bland & Altman 1986):
bias (mean of predicted - measured) and 95 % limits of agreement
(bias ± 1.96 SD of the differences). Screening at a BMD threshold: a case is
*positive* (low BMD) when its BMD is below the threshold, for the DXA value
and for the prediction alike; accuracy, weighted precision / recall / F1
(as in XAttn-BMD), sensitivity, specificity and ROC-AUC with the score
``-predicted BMD``. WHO accuracy: agreement of the three WHO categories of
the measured and predicted T-scores. Default thresholds are T = -1 and
T = -2.5 on a GE Lunar femoral neck (see :mod:`bmdkit.clinical`).

Metrics that are undefined on a sample (ROC-AUC, sensitivity, specificity
with only one class present) are NaN rather than errors.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from sklearn import metrics as skm

from bmdkit.clinical import screening_thresholds, t_score, who_category

__all__ = [
    "REGRESSION_METRICS", "SCREENING_METRICS", "bias", "compute_metrics", "limits_of_agreement",
    "pearson_r", "resolve_thresholds", "scorers", "screening_metrics", "who_accuracy",
]

LOA_Z = 1.96


def _arrays(y_true, y_pred):
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {len(y_true)} values but y_pred has {len(y_pred)}")
    return y_true, y_pred


def pearson_r(y_true, y_pred):
    """Pearson correlation coefficient (NaN when either side is constant).

    Examples
    --------
    >>> round(pearson_r([1, 2, 3], [2, 4, 7]), 4)
    0.9934
    """
    y_true, y_pred = _arrays(y_true, y_pred)
    if len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return float("nan")
    return float(np.corrcoef(y_true, y_pred)[0, 1])


def bias(y_true, y_pred):
    """Mean difference predicted - measured (Bland-Altman bias), in g/cm².

    Examples
    --------
    >>> round(bias([0.8, 0.9], [0.85, 0.97]), 3)
    0.06
    """
    y_true, y_pred = _arrays(y_true, y_pred)
    return float(np.mean(y_pred - y_true))


def limits_of_agreement(y_true, y_pred):
    """Bland-Altman 95 % limits of agreement: bias ± 1.96 SD (ddof=1) of the differences.

    Returns
    -------
    (float, float)
        Lower and upper limit in g/cm².

    Examples
    --------
    >>> [round(v, 3) for v in limits_of_agreement([0.8, 0.9, 1.0], [0.82, 0.88, 1.03])]
    [-0.042, 0.062]
    """
    y_true, y_pred = _arrays(y_true, y_pred)
    diff = y_pred - y_true
    sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else float("nan")
    centre = float(np.mean(diff))
    return centre - LOA_Z * sd, centre + LOA_Z * sd


def _loa_lower(y_true, y_pred):
    return limits_of_agreement(y_true, y_pred)[0]


def _loa_upper(y_true, y_pred):
    return limits_of_agreement(y_true, y_pred)[1]


def _rmse(y_true, y_pred):
    return float(skm.root_mean_squared_error(y_true, y_pred))


#: name -> (function(y_true, y_pred), direction): +1 higher is better, -1 lower, 0 neither.
REGRESSION_METRICS = {
    "mse": (skm.mean_squared_error, -1),
    "mae": (skm.mean_absolute_error, -1),
    "rmse": (_rmse, -1),
    "r2": (skm.r2_score, +1),
    "pearson_r": (pearson_r, +1),
    "bias": (bias, 0),
    "loa_lower": (_loa_lower, 0),
    "loa_upper": (_loa_upper, 0),
}


def _low(y_true, y_pred, threshold):
    y_true, y_pred = _arrays(y_true, y_pred)
    return y_true < threshold, y_pred < threshold, y_pred


def _accuracy(y_true, y_pred, threshold):
    true, pred, _ = _low(y_true, y_pred, threshold)
    return float(skm.accuracy_score(true, pred))


def _weighted(which, y_true, y_pred, threshold):
    true, pred, _ = _low(y_true, y_pred, threshold)
    scores = skm.precision_recall_fscore_support(
        true, pred, average="weighted", labels=[False, True], zero_division=0.0)
    return float(scores[("precision", "recall", "f1").index(which)])


def _rate(positive, y_true, y_pred, threshold):
    """Sensitivity (``positive=True``) or specificity: correct share of that true class."""
    true, pred, _ = _low(y_true, y_pred, threshold)
    members = true == positive
    return float(np.mean(pred[members] == positive)) if members.any() else float("nan")


def _roc_auc(y_true, y_pred, threshold):
    true, _, y_pred = _low(y_true, y_pred, threshold)
    if true.all() or not true.any():
        return float("nan")
    return float(skm.roc_auc_score(true, -y_pred))


#: name -> (function(y_true, y_pred, threshold), direction); all higher-is-better.
SCREENING_METRICS = {
    "accuracy": (_accuracy, +1),
    "precision": (partial(_weighted, "precision"), +1),
    "recall": (partial(_weighted, "recall"), +1),
    "f1": (partial(_weighted, "f1"), +1),
    "sensitivity": (partial(_rate, True), +1),
    "specificity": (partial(_rate, False), +1),
    "roc_auc": (_roc_auc, +1),
}


def screening_metrics(y_true, y_pred, threshold):
    """Screening metrics for "BMD below ``threshold``" (g/cm²).

    Returns
    -------
    dict
        ``accuracy``, weighted ``precision`` / ``recall`` / ``f1``,
        ``sensitivity``, ``specificity``, ``roc_auc``.

    Examples
    --------
    >>> m = screening_metrics([0.7, 0.8, 0.95, 1.0], [0.75, 0.92, 0.93, 1.05], threshold=0.899)
    >>> m["sensitivity"], m["specificity"], m["roc_auc"]
    (0.5, 1.0, 1.0)
    """
    return {name: fn(y_true, y_pred, threshold) for name, (fn, _) in SCREENING_METRICS.items()}


def who_accuracy(y_true, y_pred, *, site="femoral_neck", device="lunar",
                 reference="nhanes3_female"):
    """Share of cases whose predicted WHO category equals the measured one.

    Examples
    --------
    >>> who_accuracy([0.6, 0.8, 1.0], [0.65, 0.95, 1.0])
    0.6666666666666666
    """
    y_true, y_pred = _arrays(y_true, y_pred)
    kwargs = dict(site=site, device=device, reference=reference)
    same = who_category(t_score(y_true, **kwargs)) == who_category(t_score(y_pred, **kwargs))
    return float(np.mean(same))


def resolve_thresholds(thresholds=None, *, site="femoral_neck", device="lunar",
                       reference="nhanes3_female"):
    """Screening thresholds as ``{name: BMD in g/cm²}``, the defaults filled in.

    Parameters
    ----------
    thresholds : dict of str to float or None, default=None
        ``None``: :func:`bmdkit.clinical.screening_thresholds` (T = -1 and
        T = -2.5) for ``site``, ``device`` and ``reference``. A dict is used
        as given, names as str and values as float; ``{}`` means no
        screening thresholds.
    site, device, reference
        See :func:`bmdkit.clinical.t_score`.

    Examples
    --------
    >>> {k: round(v, 3) for k, v in resolve_thresholds().items()}
    {'T=-1.0': 0.899, 'T=-2.5': 0.691}
    >>> resolve_thresholds({"paper": 0.899}), resolve_thresholds({})
    ({'paper': 0.899}, {})
    """
    if thresholds is None:
        return screening_thresholds(site=site, device=device, reference=reference)
    return {str(name): float(value) for name, value in dict(thresholds).items()}


def compute_metrics(y_true, y_pred, *, thresholds=None, site="femoral_neck", device="lunar",
                    reference="nhanes3_female"):
    """Every metric of this module as one flat dict.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Measured (DXA) and predicted BMD in g/cm².
    thresholds : dict of str to float or None, default=None
        Screening thresholds by name; ``None``:
        :func:`bmdkit.clinical.screening_thresholds` for ``site``/``device``;
        ``{}``: none (see :func:`resolve_thresholds`).
    site, device, reference
        For the WHO categories and default thresholds (see :func:`bmdkit.clinical.t_score`).

    Returns
    -------
    dict
        Regression metrics by name, screening metrics as ``"<metric>@<threshold>"``
        (e.g. ``"roc_auc@T=-1.0"``) and ``"who_accuracy"``.

    Examples
    --------
    >>> m = compute_metrics([0.7, 0.8, 0.95, 1.0], [0.75, 0.92, 0.93, 1.05])
    >>> round(m["mse"], 5), m["accuracy@T=-1.0"]
    (0.00495, 0.75)
    """
    result = {name: float(fn(y_true, y_pred)) for name, (fn, _) in REGRESSION_METRICS.items()}
    thresholds = resolve_thresholds(thresholds, site=site, device=device, reference=reference)
    for label, threshold in thresholds.items():
        for name, value in screening_metrics(y_true, y_pred, threshold).items():
            result[f"{name}@{label}"] = value
    result["who_accuracy"] = who_accuracy(y_true, y_pred, site=site, device=device,
                                          reference=reference)
    return result


def scorers(thresholds=None, *, site="femoral_neck", device="lunar", reference="nhanes3_female"):
    """scikit-learn scorers for ``cross_validate(scoring=...)`` / ``GridSearchCV``.

    Lower-is-better metrics are negated and prefixed ``neg_`` as in
    scikit-learn (``neg_mse``, ``neg_mae``, ``neg_rmse``); ``bias`` and the
    limits of agreement are returned as they are (they are not scores).

    Parameters
    ----------
    thresholds, site, device, reference
        As in :func:`compute_metrics`.

    Returns
    -------
    dict of str to callable

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from sklearn.model_selection import cross_validate
    >>> from bmdkit.model_selection import BMDStratifiedKFold
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 1)); y = 0.85 + 0.12 * X[:, 0] + rng.normal(0, 0.03, 200)
    >>> cv = BMDStratifiedKFold(5, random_state=0)
    >>> res = cross_validate(LinearRegression(), X, y, cv=cv, scoring=scorers())
    >>> bool(res["test_r2"].mean() > 0.9), bool(res["test_neg_mse"].mean() < 0)
    (True, True)
    """
    kwargs = dict(site=site, device=device, reference=reference)
    result = {}
    for name, (fn, direction) in REGRESSION_METRICS.items():
        key = f"neg_{name}" if direction < 0 else name
        result[key] = skm.make_scorer(fn, greater_is_better=direction >= 0)
    thresholds = resolve_thresholds(thresholds, site=site, device=device, reference=reference)
    for label, threshold in thresholds.items():
        for name, (fn, _) in SCREENING_METRICS.items():
            result[f"{name}@{label}"] = skm.make_scorer(fn, threshold=threshold)
    result["who_accuracy"] = skm.make_scorer(who_accuracy, **kwargs)
    return result
