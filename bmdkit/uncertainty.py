"""Conformal prediction intervals for BMD estimators: :class:`ConformalBMDRegressor`.

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

The arithmetic of the intervals is :mod:`bmdkit.conformal`, referral at
screening thresholds :mod:`bmdkit.referral`; their public names are
re-exported here (``bmdkit.uncertainty.referral_analysis`` ...). This module
never imports torch; it fits and loads the models it wraps.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.model_selection import GroupShuffleSplit, train_test_split
from sklearn.utils.validation import check_is_fitted

from bmdkit.conformal import (  # re-exported: the public names of bmdkit.uncertainty
    CONFIDENCE,
    conformal_interval,
    conformal_rank,
    cross_fit_intervals,
    interval_metrics,
)
from bmdkit.errors import InputError, ParameterError, SavedFileError
from bmdkit.folds import run_folds, take_rows
from bmdkit.model_selection import BMDStratifiedKFold, quantile_bins
from bmdkit.params import Check, Interval, Options, validate_params
from bmdkit.referral import (
    REFERRAL_CONFIDENCES,
    prediction_frame,
    refer,
    referral_analysis,
    referral_curve,
    referral_frame,
)

__all__ = [
    "CONFIDENCE", "CONFORMAL_FILE", "METHODS", "REFERRAL_CONFIDENCES", "ConformalBMDRegressor", "conformal_interval", "conformal_rank",
    "cross_fit_intervals", "interval_metrics", "load", "prediction_frame", "refer",
    "referral_analysis",
    "referral_curve", "referral_frame",
]

#: Conformal methods of :class:`ConformalBMDRegressor`.
METHODS = ("split", "cv+")
#: File that marks a folder written by :meth:`ConformalBMDRegressor.save`.
CONFORMAL_FILE = "conformal.json"
_FORMAT = "bmdkit-conformal"


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
        raise ParameterError(f"estimator must be a scikit-learn regressor (with fit and "
                             f"predict), got {estimator!r}")


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
    offered: why is measured in docs/uncertainty.md.

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
        from bmdkit.persistence import META_FILE, check_destination, write_folder
        from bmdkit.persistence import save as save_model

        check_is_fitted(self, "estimators_")
        path = Path(path)
        check_destination(path, overwrite=overwrite,
                          saved=(path / CONFORMAL_FILE).is_file() or (path / META_FILE).is_file())
        state, estimators = self.to_state()

        def write(folder):
            for name, fitted in zip(state["models"], estimators):
                save_model(fitted, folder / name)
            (folder / CONFORMAL_FILE).write_text(json.dumps(state), encoding="utf-8")
        return write_folder(path, write)

    def to_state(self):
        """``(state, fitted models)``: the calibration as plain values, and the models."""
        check_is_fitted(self, "estimators_")
        return {"format": _FORMAT, "method": self.method, "confidence": float(self.confidence),
                "models": [f"model_{k}" for k in range(len(self.estimators_))],
                "calibration_scores": self.calibration_scores_.tolist(),
                "score_model": self.score_model_.tolist(),
                "calibration_rows": self.calibration_rows_.tolist()}, list(self.estimators_)

    @classmethod
    def from_state(cls, state, estimators):
        """The fitted wrapper of :meth:`to_state`'s ``state`` around the fitted ``estimators``."""
        model = cls(clone(estimators[0]), confidence=state["confidence"],
                    method=state["method"], cv=len(estimators))
        model.estimators_ = list(estimators)
        model.calibration_scores_ = np.asarray(state["calibration_scores"], dtype=np.float64)
        model.score_model_ = np.asarray(state["score_model"], dtype=np.intp)
        model.calibration_rows_ = np.asarray(state["calibration_rows"], dtype=np.intp)
        if (len(model.score_model_) != len(model.calibration_scores_)
                or (len(estimators) and model.score_model_.max(initial=0) >= len(estimators))):
            raise SavedFileError("the saved scores and models do not match")
        return model


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
    try:
        return ConformalBMDRegressor.from_state(meta, estimators)
    except SavedFileError as error:
        raise SavedFileError(f"{meta_path} is inconsistent: {error}") from None
