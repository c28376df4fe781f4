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

Several BMD sites (``y`` of shape (n, k), ``site`` naming the columns): every
metric per site, named ``"<site>/<metric>"``.

Metrics that are undefined on a sample (ROC-AUC, sensitivity, specificity
with only one class present) are NaN rather than errors.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from sklearn import metrics as skm

from bmdkit.clinical import SBMD_EQUATIONS, screening_thresholds, t_score, who_category
from bmdkit.errors import InputError, ParameterError

__all__ = [
    "REGRESSION_METRICS", "SCREENING_METRICS", "bias", "compute_metrics", "has_t_score_reference",
    "limits_of_agreement", "pearson_r", "resolve_thresholds", "scorers", "screening_metrics",
    "site_names", "who_accuracy",
]

LOA_Z = 1.96


def _arrays(y_true, y_pred):
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise InputError(f"y_true has {len(y_true)} values but y_pred has {len(y_pred)}")
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


def site_names(site, n_sites):
    """The ``n_sites`` site names of a several-site ``y``, or ``None`` for one site.

    Parameters
    ----------
    site : str or sequence of str
        One name per column of ``y``, e.g. ``["femoral_neck", "total_hip",
        "lumbar_spine"]``; a single str is one site.
    n_sites : int
        Columns of ``y`` (1 for a 1-D ``y``).

    Examples
    --------
    >>> site_names("femoral_neck", 1), site_names(["femoral_neck", "total_hip"], 2)
    (None, ['femoral_neck', 'total_hip'])
    """
    if isinstance(site, str):
        if n_sites > 1:
            raise ParameterError(f"y has {n_sites} columns (BMD sites): pass site=[...] naming each "
                             "column, e.g. ['femoral_neck', 'total_hip', 'lumbar_spine']")
        return None
    names = [str(s) for s in site]
    if len(names) != n_sites or len(set(names)) != len(names):
        raise ParameterError(f"site must name each of the {n_sites} columns of y once, got {names}")
    return names


def has_t_score_reference(site, *, device="lunar", reference="nhanes3_female"):
    """Whether T-scores (hence screening thresholds) are defined at ``site``.

    Examples
    --------
    >>> has_t_score_reference("total_hip"), has_t_score_reference("lumbar_spine")
    (True, False)
    """
    try:
        resolve_thresholds(None, site=site, device=device, reference=reference)
    except ValueError:
        return False
    return True


def _n_sites(y):
    y = np.asarray(y)
    return y.shape[1] if y.ndim == 2 else 1


def compute_metrics(y_true, y_pred, *, thresholds=None, site="femoral_neck", device="lunar",
                    reference="nhanes3_female"):
    """Every metric of this module as one flat dict.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,) or (n, k)
        Measured (DXA) and predicted BMD in g/cm²; k columns for k sites.
    thresholds : dict of str to float or None, default=None
        Screening thresholds by name; ``None``:
        :func:`bmdkit.clinical.screening_thresholds` for ``site``/``device``;
        ``{}``: none (see :func:`resolve_thresholds`). For several sites, a
        dict ``{site: thresholds}`` (sites left out get their defaults).
    site : str or sequence of str, default="femoral_neck"
        For the WHO categories and default thresholds (see
        :func:`bmdkit.clinical.t_score`; a site without them, e.g. the lumbar spine,
        gets the regression metrics only); for a ``(n, k)`` ``y``, the k site
        names, in column order.
    device, reference
        See :func:`bmdkit.clinical.t_score`.

    Returns
    -------
    dict
        Regression metrics by name, screening metrics as ``"<metric>@<threshold>"``
        (e.g. ``"roc_auc@T=-1.0"``) and ``"who_accuracy"``. For several sites
        the same per site as ``"<site>/<metric>"``; sites without a T-score
        reference (:func:`has_t_score_reference`, e.g. the lumbar spine) get
        the regression metrics only.

    Examples
    --------
    >>> m = compute_metrics([0.7, 0.8, 0.95, 1.0], [0.75, 0.92, 0.93, 1.05])
    >>> round(m["mse"], 5), m["accuracy@T=-1.0"]
    (0.00495, 0.75)
    >>> import numpy as np
    >>> y = np.array([[0.7, 0.9], [0.8, 1.0], [0.95, 1.1]])
    >>> m = compute_metrics(y, y + 0.01, site=["femoral_neck", "lumbar_spine"])
    >>> round(m["lumbar_spine/mae"], 3), "lumbar_spine/who_accuracy" in m
    (0.01, False)
    """
    names = site_names(site, _n_sites(y_true))
    if names is None:  # one site; one without sBMD equations (lumbar spine): no T-score metrics
        return _site_metrics(y_true, y_pred, thresholds, dict(
            site=site, device=device, reference=reference) if site in SBMD_EQUATIONS else None)
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if y_pred.shape != y_true.shape:
        raise InputError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    result = {}
    for j, name in enumerate(names):
        clinical = dict(site=name, device=device, reference=reference)
        metrics = _site_metrics(y_true[:, j], y_pred[:, j], (thresholds or {}).get(name),
                                clinical if has_t_score_reference(**clinical) else None)
        result.update({f"{name}/{key}": value for key, value in metrics.items()})
    return result


def _site_metrics(y_true, y_pred, thresholds, clinical):
    """Metrics of one site; screening and WHO ones only with ``clinical`` settings."""
    result = {name: float(fn(y_true, y_pred)) for name, (fn, _) in REGRESSION_METRICS.items()}
    if clinical is None:
        return result
    for label, threshold in resolve_thresholds(thresholds, **clinical).items():
        for name, value in screening_metrics(y_true, y_pred, threshold).items():
            result[f"{name}@{label}"] = value
    result["who_accuracy"] = who_accuracy(y_true, y_pred, **clinical)
    return result


def _on_column(y_true, y_pred, *, metric, column, **kwargs):
    """``metric`` of one column (site) of 2-D targets and predictions."""
    return metric(np.asarray(y_true)[:, column], np.asarray(y_pred)[:, column], **kwargs)


def scorers(thresholds=None, *, site="femoral_neck", device="lunar", reference="nhanes3_female"):
    """scikit-learn scorers for ``cross_validate(scoring=...)`` / ``GridSearchCV``.

    Lower-is-better metrics are negated and prefixed ``neg_`` as in
    scikit-learn (``neg_mse``, ``neg_mae``, ``neg_rmse``); ``bias`` and the
    limits of agreement are returned as they are (they are not scores).

    Parameters
    ----------
    thresholds, site, device, reference
        As in :func:`compute_metrics`. With ``site`` a sequence of names
        (several sites, ``y`` of shape (n, k)), every scorer is per site,
        named ``"<site>/<scorer>"``.

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
    >>> Y = np.c_[y, 1.2 * y]
    >>> res = cross_validate(LinearRegression(), X, Y, cv=cv,
    ...                      scoring=scorers(site=["femoral_neck", "lumbar_spine"]))
    >>> bool(res["test_lumbar_spine/r2"].mean() > 0.9)
    True
    """
    if isinstance(site, str):
        return {key: skm.make_scorer(fn, greater_is_better=greater, **kwargs) for key, fn, greater,
                kwargs in _scorer_specs(thresholds, dict(site=site, device=device,
                                                         reference=reference))}
    result = {}
    for column, name in enumerate(site_names(site, len(list(site)))):
        clinical = dict(site=name, device=device, reference=reference)
        specs = _scorer_specs((thresholds or {}).get(name),
                              clinical if has_t_score_reference(**clinical) else None)
        for key, fn, greater, kwargs in specs:
            result[f"{name}/{key}"] = skm.make_scorer(
                _on_column, greater_is_better=greater, metric=fn, column=column, **kwargs)
    return result


def _scorer_specs(thresholds, clinical):
    """(name, metric function, greater is better, keyword arguments) of each scorer of a site."""
    for name, (fn, direction) in REGRESSION_METRICS.items():
        yield (f"neg_{name}" if direction < 0 else name), fn, direction >= 0, {}
    if clinical is None:
        return
    for label, threshold in resolve_thresholds(thresholds, **clinical).items():
        for name, (fn, _) in SCREENING_METRICS.items():
            yield f"{name}@{label}", fn, True, dict(threshold=threshold)
    yield "who_accuracy", who_accuracy, True, clinical
