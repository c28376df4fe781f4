"""Compare several estimators under one cross-validation protocol.

:func:`compare_models` fits every model on identical folds (by default the
XAttn-BMD protocol, :class:`~bmdkit.model_selection.BMDStratifiedKFold` with
10 folds), keeps the out-of-fold predictions and scores each fold with
:func:`bmdkit.metrics.compute_metrics`. The returned
:class:`ComparisonResults` summarises the folds (mean ± SD), the relative
change of each model against a baseline and a paired test of each
difference. The folds are fitted by :func:`bmdkit.folds.run_folds`, the
one fold runner (also behind :func:`bmdkit.tuning.tune` and CV+ conformal
intervals); ``run_folds``, ``cv_splits`` and ``FoldResult`` stay importable
from here. This module works on predictions only; it never imports torch.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bmdkit.conformal import cross_fit_intervals, interval_metrics
from bmdkit.errors import InputError, MissingFileError, ParameterError
from bmdkit.files import atomic_path
from bmdkit.fit_store import FitStore
from bmdkit.folds import FoldResult, cv_splits, run_folds
from bmdkit.metrics import (
    REGRESSION_METRICS,
    compute_metrics,
    has_t_score_reference,
    resolve_thresholds,
    site_names,
)
from bmdkit.registry import BASELINE_FUSION, model_label
from bmdkit.significance import bootstrap_intervals, corrected_paired_ttest, paired_tests

__all__ = ["PAPER_MODEL", "PAPER_XATTN_VS_CONCAT", "ComparisonResults", "FoldResult",
           "compare_models", "corrected_paired_ttest", "cv_splits", "paper_comparison",
           "run_folds"]

#: XAttn-BMD's reported change of XAttn against concatenation, in percent
#: (Zhang et al., arXiv 2511.14604).
PAPER_XATTN_VS_CONCAT = {"mse": -16.7, "mae": -6.03, "r2": 16.4}
#: The paper's model, whose change :data:`PAPER_XATTN_VS_CONCAT` reports: its fusion's name
#: in :data:`bmdkit.registry.FUSIONS` (:func:`~bmdkit.registry.model_label` gives its label).
PAPER_MODEL = "xattn"


#: Metrics shown by :meth:`ComparisonResults.table` (when present).
KEY_METRICS = ("mse", "mae", "rmse", "r2", "pearson_r", "bias", "accuracy@T=-1.0",
               "f1@T=-1.0", "sensitivity@T=-1.0", "specificity@T=-1.0", "roc_auc@T=-1.0",
               "roc_auc@T=-2.5", "who_accuracy", "coverage", "interval_width")
#: Metrics of :meth:`ComparisonResults.bootstrap_intervals` by default: the report's summary.
SUMMARY_METRICS = ("r2", "mae", "sensitivity@T=-1.0", "specificity@T=-1.0",
                   "sensitivity@T=-2.5", "specificity@T=-2.5", "coverage", "interval_width")
#: Metrics whose change against the baseline :meth:`ComparisonResults.table` reports.
CHANGE_METRICS = ("mse", "mae", "r2")

_FOLD_COLUMNS = ("model", "fold", "n_train", "n_test", "fit_time")


@dataclass
class ComparisonResults:
    """Per-fold scores and out-of-fold predictions of several models.

    Attributes
    ----------
    fold_scores : pandas.DataFrame
        One row per (model, fold): ``model``, ``fold``, ``n_train``,
        ``n_test``, ``fit_time`` (s) and every metric of
        :func:`bmdkit.metrics.compute_metrics`.
    predictions : pandas.DataFrame
        Out-of-fold predictions, long format: ``model``, ``fold``, ``row``
        (position in X), (several sites: ``site``), ``y_true``, ``y_pred``, and
        with a ``confidence`` the conformal interval ``y_lower``, ``y_upper``
        (:func:`bmdkit.conformal.cross_fit_intervals`, per site).
    thresholds : dict of str to float
        Screening thresholds (g/cm²) by name (several sites: ``{site: {name:
        value}}`` for the sites with a T-score reference).
    baseline : str or None
        Model that relative changes and tests are computed against.
    clinical : dict
        ``site``, ``device`` and ``reference`` of the T-scores.
    models : dict of str to str
        Each model's ``repr``.
    synthetic : bool
        Whether the data were synthetic (the report then says so).
    title, description : str or None
        Report title and a paragraph on the cohort and protocol, for
        re-drawing the report (``bmdkit report``).
    confidence : float or None
        Level of the conformal intervals in :attr:`predictions` (None: none).

    Everything but these three report labels is fixed once the results exist.
    """

    fold_scores: pd.DataFrame
    predictions: pd.DataFrame
    thresholds: dict
    baseline: str | None = None
    clinical: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    synthetic: bool = False
    title: str | None = None
    description: str | None = None
    confidence: float | None = None

    @property
    def model_names(self):
        """Model names in the order they were given."""
        return list(dict.fromkeys(self.fold_scores["model"]))

    @property
    def sites(self):
        """Names of the BMD sites when ``y`` had several, else ``None``."""
        site = self.clinical.get("site")
        return None if site is None or isinstance(site, str) else list(site)

    def for_site(self, site):
        """The results of one site of several, as if ``y`` had been that site alone.

        Metrics lose their ``"<site>/"`` prefix, predictions keep that
        site's rows, thresholds and T-scores are the site's (none for a site
        without a T-score reference).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.linear_model import Ridge
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(80, 1)); Y = 0.85 + 0.1 * X + rng.normal(0, 0.05, (80, 2))
        >>> res = compare_models([Ridge()], X, Y, cv=4, site=["femoral_neck", "lumbar_spine"],
        ...                      progress=False)
        >>> spine = res.for_site("lumbar_spine")
        >>> spine.sites, spine.thresholds, "r2" in spine.metric_names, len(spine.predictions)
        (None, {}, True, 80)
        """
        if self.sites is None or site not in self.sites:
            raise ParameterError(f"no site {site!r} in these results (sites: {self.sites})")
        prefix = f"{site}/"
        scores = self.fold_scores[
            [c for c in self.fold_scores.columns if c in _FOLD_COLUMNS or c.startswith(prefix)]]
        predictions = self.predictions[self.predictions["site"] == site].drop(columns="site")
        return replace(
            self, fold_scores=scores.rename(columns=lambda c: c.removeprefix(prefix)),
            predictions=predictions.reset_index(drop=True),
            thresholds=dict(self.thresholds.get(site, {})), clinical={**self.clinical, "site": site})

    def scored_metrics(self, metrics):
        """Those of ``metrics`` scored here, as column names of :attr:`fold_scores`.

        With several sites each metric becomes its per-site names,
        ``"<site>/<metric>"``, in the order of :attr:`sites`.
        """
        names = [[m] if self.sites is None else [f"{s}/{m}" for s in self.sites] for m in metrics]
        return [n for group in names for n in group if n in self.metric_names]

    @property
    def metric_names(self):
        """Names of the per-fold metrics."""
        return [c for c in self.fold_scores.columns if c not in _FOLD_COLUMNS]

    def resolve_baseline(self, baseline=None):
        """The model to compare against: ``baseline``, else :attr:`baseline`.

        Raises
        ------
        ParameterError
            There is none, or it is not one of :attr:`model_names`.
        """
        baseline = baseline if baseline is not None else self.baseline
        if baseline is None:
            raise ParameterError("no baseline: pass baseline=<model name>")
        if baseline not in self.model_names:
            raise ParameterError(f"baseline {baseline!r} is not one of {self.model_names}")
        return baseline

    def per_fold(self, metric):
        """Scores of one metric: index fold, one column per model."""
        return self.fold_scores.pivot(index="fold", columns="model", values=metric)

    def fold_sizes(self):
        """``(n_train, n_test)``: mean training and test rows per fold, for
        :func:`corrected_paired_ttest`."""
        return self.fold_scores["n_train"].mean(), self.fold_scores["n_test"].mean()

    def summary(self):
        """Mean and SD over folds: index model, columns (metric, "mean" | "sd")."""
        grouped = self.fold_scores.groupby("model", sort=False)[self.metric_names]
        table = pd.concat({"mean": grouped.mean(), "sd": grouped.std(ddof=1)}, axis=1)
        return table.swaplevel(axis=1)[self.metric_names].reindex(self.model_names)

    def relative_change(self, baseline=None):
        """Change of each model's mean score against the baseline, in percent.

        ``100 * (model - baseline) / |baseline|`` for every metric (XAttn-BMD
        reports XAttn vs concat as -16.7 % MSE, -6.03 % MAE, +16.4 % R²).
        """
        baseline = self.resolve_baseline(baseline)
        means = self.fold_scores.groupby("model", sort=False)[self.metric_names].mean()
        base = means.loc[baseline]
        with np.errstate(divide="ignore", invalid="ignore"):
            change = 100.0 * (means - base) / base.abs()
        return change.drop(index=baseline).reindex([m for m in self.model_names if m != baseline])

    def paired_tests(self, baseline=None, metrics=None):
        """Paired tests over folds of each model against the baseline, per metric.

        Parameters
        ----------
        baseline : str or None
            Default: :attr:`baseline`.
        metrics : sequence of str or None
            Test only these metrics (default: every metric).

        Returns
        -------
        pandas.DataFrame
            ``model``, ``metric``, ``mean_difference`` (model - baseline),
            ``p_ttest`` (paired t-test), ``p_wilcoxon`` (Wilcoxon signed-rank)
            and ``p_corrected`` (:func:`corrected_paired_ttest`).
        """
        return paired_tests(self, baseline, metrics)

    def pooled_metrics(self):
        """Metrics of the pooled out-of-fold predictions, one row per model."""
        rows = {model: _metrics(part, self.thresholds, self.clinical)
                for model, part in self.predictions.groupby("model", sort=False)}
        return pd.DataFrame(rows).T.reindex(self.model_names)

    def bootstrap_intervals(self, metrics=SUMMARY_METRICS, *, n_boot=1000, level=0.95,
                            random_state=0):
        """Pooled out-of-fold metrics with percentile bootstrap intervals over subjects.

        Each resample draws the rows of X (subjects) with replacement, the
        same draw for every model, and takes all out-of-fold predictions of
        the drawn rows (with repeated CV, a row's prediction of every repeat).

        Parameters
        ----------
        metrics : sequence of str, default=SUMMARY_METRICS
            Names among ``mse``, ``mae``, ``r2``, ``sensitivity@<threshold>``,
            ``specificity@<threshold>``, ``coverage``, ``interval_width``
            (those the results lack are left out).
        n_boot : int, default=1000
        level : float, default=0.95
        random_state : int or None, default=0

        Returns
        -------
        pandas.DataFrame
            Index model; columns (metric, ``"estimate"`` | ``"low"`` | ``"high"``):
            the pooled metric and the ends of its interval. Resamples in
            which a metric is undefined (e.g. no case below a threshold) are
            skipped.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.linear_model import Ridge
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 1)); y = 0.85 + 0.1 * X[:, 0] + rng.normal(0, 0.05, 100)
        >>> res = compare_models([Ridge()], X, y, cv=5, progress=False)
        >>> ci = res.bootstrap_intervals(["r2"], n_boot=200).loc["Ridge", "r2"]
        >>> bool(ci["low"] < ci["estimate"] < ci["high"])
        True
        """
        return bootstrap_intervals(self, metrics, n_boot=n_boot, level=level,
                                   random_state=random_state)

    def headline_test(self, headline=None, metric="mse"):
        """One sentence: did ``headline`` beat the baseline significantly on ``metric``?

        Uses the corrected resampled t-test over folds (:func:`corrected_paired_ttest`)
        at the 5 % level. ``headline`` defaults to the first model that is not
        the baseline. Returns None without a baseline.
        """
        if self.baseline is None or len(self.model_names) < 2:
            return None
        headline = headline or next(m for m in self.model_names if m != self.baseline)
        test = self.paired_tests(metrics=[metric]).set_index("model").loc[headline]
        means = self.fold_scores.groupby("model")[metric].mean()
        better = REGRESSION_METRICS.get(metric, (None, +1))[1] * test["mean_difference"] > 0
        p = test["p_corrected"]
        verdict = ("did not differ significantly from" if not p < 0.05
                   else "significantly beat" if better else "was significantly worse than")
        return (f"{headline} {verdict} the baseline {self.baseline} on {metric.upper()} "
                f"({means[headline]:.4g} vs {means[self.baseline]:.4g}, mean over "
                f"{self.fold_scores['fold'].nunique()} folds; corrected resampled t-test "
                f"p = {p:.3f}).")

    def table(self, metrics=KEY_METRICS, digits=4):
        """The results table: ``mean ± SD`` over folds, plus changes against the baseline.

        With a baseline, columns ``Δ <metric> %`` (relative change) and
        ``p <metric>`` (corrected resampled t-test) follow for MSE, MAE and R²
        (per site, ``<site>/<metric>``, for several sites).
        """
        metrics = self.scored_metrics(metrics)
        summary = self.summary()
        table = pd.DataFrame(index=self.model_names)
        for metric in metrics:
            mean, sd = summary[(metric, "mean")], summary[(metric, "sd")]
            table[metric] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(mean, sd)]
        if self.baseline is not None:
            change = self.relative_change()
            n_train, n_test = self.fold_sizes()
            for metric in (m for m in self.scored_metrics(CHANGE_METRICS) if m in metrics):
                # p_corrected of paired_tests(), without its slower t and Wilcoxon tests
                per_fold = self.per_fold(metric)
                base = per_fold[self.baseline].to_numpy()
                p = {model: corrected_paired_ttest(per_fold[model].to_numpy() - base,
                                                   n_train, n_test)
                     for model in self.model_names if model != self.baseline}
                table[f"Δ {metric} %"] = [
                    "baseline" if model == self.baseline else f"{change.loc[model, metric]:+.1f}"
                    for model in self.model_names
                ]
                table[f"p {metric}"] = [
                    "" if model == self.baseline else f"{p[model]:.3f}"
                    for model in self.model_names
                ]
        table.index.name = "model"
        return table

    def save(self, path):
        """Write ``fold_scores.csv``, ``predictions.csv`` and ``results.json`` to ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = dict(thresholds=self.thresholds, baseline=self.baseline, clinical=self.clinical,
                    models=self.models, synthetic=self.synthetic, title=self.title,
                    description=self.description, confidence=self.confidence)
        # every file is written whole to a temporary sibling first; the three replace the old
        # ones only once all are written (a failure leaves the old results as they were)
        with contextlib.ExitStack() as stack:
            scores, predictions, results = (
                stack.enter_context(atomic_path(path / name))
                for name in ("fold_scores.csv", "predictions.csv", "results.json"))
            self.fold_scores.to_csv(scores, index=False)
            self.predictions.to_csv(predictions, index=False)
            results.write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path):
        """Read results written by :meth:`save` (also by older versions: without report labels
        or intervals)."""
        path = Path(path)
        for name in ("fold_scores.csv", "predictions.csv", "results.json"):
            if not (path / name).is_file():
                raise MissingFileError(f"{path / name} not found: not a saved results folder")
        meta = json.loads((path / "results.json").read_text())
        return cls(
            fold_scores=pd.read_csv(path / "fold_scores.csv"),
            predictions=pd.read_csv(path / "predictions.csv"),
            **meta,
        )


def _metrics(predictions, thresholds, clinical):
    """Every metric of some out-of-fold predictions, interval coverage and width included.

    Several sites (``clinical["site"]`` a list, ``predictions`` with a ``site``
    column): every metric per site, ``"<site>/<metric>"``.
    """
    sites = clinical["site"]
    values = [c for c in ("y_true", "y_pred", "y_lower", "y_upper") if c in predictions]
    if isinstance(sites, str):
        columns = {c: predictions[c] for c in values}
    else:  # wide: one column per site, in site order
        wide = predictions.pivot(index="row", columns="site", values=values)
        columns = {c: wide[c][sites].to_numpy() for c in values}
    result = compute_metrics(columns["y_true"], columns["y_pred"], thresholds=thresholds,
                             **clinical)
    if "y_lower" not in columns:
        return result
    if isinstance(sites, str):
        result.update(interval_metrics(columns["y_true"], columns["y_lower"], columns["y_upper"]))
        return result
    for j, name in enumerate(sites):
        intervals = interval_metrics(*(columns[c][:, j] for c in ("y_true", "y_lower", "y_upper")))
        result.update({f"{name}/{key}": value for key, value in intervals.items()})
    return result


def _add_intervals(predictions, confidence):
    """``y_lower``/``y_upper`` of each model's (and site's) out-of-fold predictions,
    calibrated on other folds."""
    bounds = np.empty((len(predictions), 2))
    by = ["model", "site"] if "site" in predictions else "model"
    for _, part in predictions.groupby(by, sort=False):
        bounds[predictions.index.get_indexer(part.index)] = cross_fit_intervals(part, confidence)
    return predictions.assign(y_lower=bounds[:, 0], y_upper=bounds[:, 1])


def _named_models(models):
    if isinstance(models, dict):
        return dict(models)
    named = {}
    for model in models:
        name, i = type(model).__name__, 2
        while name in named:
            name, i = f"{type(model).__name__}_{i}", i + 1
        named[name] = model
    return named


def _long_predictions(model, fold, rows, y_true, y_pred, sites):
    """One fold's predictions in long format (one line per row, and per site if several)."""
    if sites is None:
        return pd.DataFrame(dict(model=model, fold=fold, row=rows, y_true=y_true, y_pred=y_pred))
    return pd.DataFrame(dict(model=model, fold=fold, row=np.repeat(rows, len(sites)),
                             site=np.tile(sites, len(rows)), y_true=y_true.ravel(),
                             y_pred=y_pred.ravel()))


def compare_models(models, X, y, *, cv=None, groups=None, baseline=None, thresholds=None,
                   site="femoral_neck", device="lunar", reference="nhanes3_female",
                   confidence=0.9, progress=True, on_fit=None, n_jobs=None, checkpoint_dir=None):
    """Cross-validate several estimators on identical folds.

    Parameters
    ----------
    models : dict of str to estimator, or list of estimators
        Unfitted scikit-learn regressors; each is cloned for every fold.
    X : pandas.DataFrame or array-like
    y : array-like of shape (n,) or (n, k)
        Measured BMD in g/cm²; k columns for k sites (name them in ``site``):
        every metric is then computed per site, ``"<site>/<metric>"``, and
        the folds are stratified on the first column by the default splitter.
    cv : splitter, int or None, default=None
        ``None``: ``BMDStratifiedKFold(10, random_state=0)``; an int: that many
        folds of it (of ``BMDStratifiedGroupKFold`` with ``groups``). Any
        splitter with ``split(X, y, groups)`` works.
    groups : array-like or None
        Passed to ``cv.split`` (e.g. patient ids); no group may straddle a
        fold's training and test rows (else ValueError).
    baseline : str or None
        Name of the model to compare the others against.
    thresholds : dict or None
        Screening thresholds (see :func:`bmdkit.metrics.resolve_thresholds`):
        ``None`` for T = -1 and T = -2.5 on ``device``, ``{}`` for none;
        several sites: ``{site: thresholds}``.
    site : str or sequence of str, default="femoral_neck"
        The site of ``y``, or of each of its columns (e.g. ``["femoral_neck",
        "total_hip", "lumbar_spine"]``); screening metrics need a T-score
        reference (:func:`bmdkit.metrics.has_t_score_reference`).
    device, reference
        T-score settings (see :func:`bmdkit.clinical.t_score`).
    confidence : float in (0, 1) or None, default=0.9
        Level of conformal intervals around the out-of-fold predictions, and
        per fold their empirical ``coverage`` and mean ``interval_width``
        (g/cm²). A row's interval is calibrated on the out-of-fold residuals
        of the rows of *other* folds only, so no test row calibrates its own
        interval and no model is refitted
        (:func:`bmdkit.conformal.cross_fit_intervals`). ``None``: none.
    progress : bool, default=True
        Show a progress bar over folds × models, with the time left.
    on_fit : callable or None, default=None
        Called as ``on_fit(name, fold, fitted, test)`` after each fit, with
        the fitted clone and the positions of its test rows, e.g. to keep
        one fold's model for explanations (:func:`bmdkit.explain.explanation_figures`)
        without fitting again (with ``n_jobs``, the clone comes back from its worker).
    n_jobs : int or None, default=None
        Fits run in parallel, in joblib worker processes with
        ``cpu_count() // n_jobs`` torch threads each (see :func:`bmdkit.folds.run_folds`).
        With an int ``random_state``, the same results as ``n_jobs=1`` where
        the thread count does not change the fits' sums.
    checkpoint_dir : str, Path or None, default=None
        A folder keeping every finished fit (:class:`bmdkit.fit_store.FitStore`),
        written as soon as the fit ends: run again with the same folder, the
        comparison reuses the fits found there and fits only the others, with
        the results of an uninterrupted run (``on_fit`` is not called for
        reused fits). A folder holding fits of other data, folds or model
        parameters is refused (:class:`~bmdkit.fit_store.StoreMismatchError`).
        While fits run, SIGINT and SIGTERM raise
        :class:`~bmdkit.fit_store.FitsInterrupted` after what is finished was
        written.

    Returns
    -------
    ComparisonResults

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyRegressor
    >>> from sklearn.linear_model import Ridge
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 2)); y = 0.85 + 0.1 * X[:, 0] + rng.normal(0, 0.03, 100)
    >>> res = compare_models({"ridge": Ridge(), "mean": DummyRegressor()}, X, y, cv=5,
    ...                      baseline="mean", progress=False)
    >>> bool(res.relative_change().loc["ridge", "mse"] < -50)
    True
    """
    models = _named_models(models)
    if baseline is not None and baseline not in models:
        raise ParameterError(f"baseline {baseline!r} is not one of {list(models)}")
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(len(y), -1) if y.ndim == 2 and y.shape[1] > 1 else y.ravel()
    if len(y) != len(X):
        raise InputError(f"X has {len(X)} rows but y has {len(y)} values")
    sites = site_names(site, y.shape[1] if y.ndim == 2 else 1)
    clinical = dict(site=site if sites is None else sites, device=device, reference=reference)
    if sites is None:
        thresholds = resolve_thresholds(thresholds, **clinical)
    else:
        thresholds = {
            name: resolve_thresholds((thresholds or {}).get(name), site=name, device=device,
                                     reference=reference)
            for name in sites if has_t_score_reference(name, device=device, reference=reference)}
    splits = cv_splits(cv, X, y, groups)
    store = None
    if checkpoint_dir is not None:
        store = FitStore(checkpoint_dir, X, y)
        store.open(models, splits)
    predictions = []
    for fit in run_folds(models, X, y, splits, n_jobs=n_jobs, progress=progress,
                         keep_fitted=on_fit is not None, store=store):
        if on_fit is not None and fit.estimator is not None:
            on_fit(fit.model, fit.fold, fit.estimator, fit.test)
        y_pred = fit.y_pred.ravel() if sites is None else fit.y_pred.reshape(len(fit.test), -1)
        predictions.append(_long_predictions(fit.model, fit.fold, fit.test, y[fit.test], y_pred,
                                             sites)
                           .assign(n_train=len(fit.train), fit_time=fit.fit_time))
    predictions = pd.concat(predictions, ignore_index=True)
    if confidence is not None:
        predictions = _add_intervals(predictions, confidence)
    scores = [dict(model=name, fold=fold, n_train=part["n_train"].iloc[0], n_test=len(part),
                   fit_time=part["fit_time"].iloc[0], **_metrics(part, thresholds, clinical))
              for (fold, name), part in predictions.groupby(["fold", "model"], sort=False)]
    return ComparisonResults(
        fold_scores=pd.DataFrame(scores),
        predictions=predictions.drop(columns=["n_train", "fit_time"]),
        thresholds=thresholds, baseline=baseline, clinical=clinical,
        models={name: repr(model) for name, model in models.items()}, confidence=confidence,
    )


def paper_comparison(results, model=None, baseline=None):
    """``model`` against ``baseline`` beside XAttn-BMD's reported changes.

    Parameters
    ----------
    results : ComparisonResults
    model : str or None, default=None
        One of ``results.model_names``; ``None``: the paper's model, by its
        label (``model_label(PAPER_MODEL)``, "XAttn").
    baseline : str or None, default=None
        One of ``results.model_names``; ``None``: the registry's baseline
        fusion, by its label ("Concat"), the paper's reference.

    Returns
    -------
    pandas.DataFrame
        Per metric (MSE, MAE, R²): the paper's change in percent, ours (of
        the mean over folds) and the corrected resampled t-test p-value of
        the per-fold differences.
    """
    model = model_label(PAPER_MODEL) if model is None else model
    baseline = model_label(BASELINE_FUSION) if baseline is None else baseline
    change = results.relative_change(baseline).loc[model]
    tests = results.paired_tests(baseline, metrics=list(PAPER_XATTN_VS_CONCAT))
    tests = tests[tests["model"] == model].set_index("metric")
    return pd.DataFrame({
        "paper %": PAPER_XATTN_VS_CONCAT,
        "ours %": {m: round(float(change[m]), 2) for m in PAPER_XATTN_VS_CONCAT},
        "p (corrected)": {m: round(float(tests.loc[m, "p_corrected"]), 4)
                          for m in PAPER_XATTN_VS_CONCAT},
    }).rename_axis(f"{model} vs {baseline}")
