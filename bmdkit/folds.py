"""The one fold runner: clones fitted on cross-validation folds.

:func:`run_folds` fits a clone of each model on every fold's training rows,
in joblib processes with ``n_jobs``, with a progress bar, and gives each
fold's out-of-fold predictions or score as a :class:`FoldResult`;
:func:`cv_splits` makes the folds (groups kept whole). Every fold loop of
bmdkit runs here: :func:`bmdkit.evaluation.compare_models`,
:func:`bmdkit.tuning.tune` and the cross-fitting of
:class:`bmdkit.uncertainty.ConformalBMDRegressor`. This module works on
whatever estimator it is given; it imports only ``model_selection`` of
bmdkit and never imports torch. Given a store of finished fits
(:class:`bmdkit.fit_store.FitStore`, passed in), it skips the fits the store
holds and writes each other one there as soon as it ends.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.utils.parallel import Parallel, delayed
from tqdm.auto import tqdm

from bmdkit.model_selection import check_groups_kept, resolve_cv

__all__ = ["FoldResult", "cv_splits", "run_folds", "take_rows"]


def take_rows(X, index):
    """The rows of ``X`` at the positions ``index`` (a DataFrame or Series by ``iloc``).

    Examples
    --------
    >>> import pandas as pd
    >>> take_rows(pd.Series([5, 6, 7], index=[2, 1, 0]), [0, 2]).tolist(), take_rows([[1], [2]], [1])
    ([5, 7], array([[2]]))
    """
    return X.iloc[index] if hasattr(X, "iloc") else np.asarray(X)[index]


def cv_splits(cv, X, y, groups=None, *, default=10):
    """The folds of ``cv`` on (X, y) as a list of (train, test) row positions.

    ``cv`` as :func:`bmdkit.model_selection.resolve_cv` takes it (``None``:
    ``default`` stratified folds); no group of ``groups`` may straddle a
    fold's training and test rows (else ValueError).

    Examples
    --------
    >>> import numpy as np
    >>> [len(test) for _, test in cv_splits(4, np.zeros((20, 1)), np.arange(20.0))]
    [5, 5, 5, 5]
    """
    cv = resolve_cv(cv, groups, default=default)
    splits = list(cv.split(X, y, groups))
    check_groups_kept(splits, groups, cv)
    return splits


@dataclass(frozen=True)
class FoldResult:
    """One model on one fold, from :func:`run_folds`.

    Attributes
    ----------
    fold : int
    model : str
    train, test : ndarray of int
        Row positions of the fold.
    y_pred : ndarray or None
        Predictions for the test rows (float64), unless ``predict=False``.
    score : float or None
        ``scorer(fitted, X_test, y_test)``, when a scorer was given.
    fit_time : float
        Seconds to fit the clone and predict (and score) its test rows.
    estimator : estimator or None
        The fitted clone, with ``keep_fitted=True``.
    """

    fold: int
    model: str
    train: np.ndarray
    test: np.ndarray
    y_pred: np.ndarray | None
    score: float | None
    fit_time: float
    estimator: object = None


def _fit_fold(fold, name, model, X, y, train, test, scorer, predict, keep_fitted, store=None,
              key=None):
    with contextlib.nullcontext() if store is None else store.guard():
        start = time.perf_counter()
        fitted = clone(model).fit(take_rows(X, train), take_rows(y, train))
        y_pred = (np.asarray(fitted.predict(take_rows(X, test)), dtype=np.float64) if predict
                  else None)
        score = (None if scorer is None
                 else float(scorer(fitted, take_rows(X, test), take_rows(y, test))))
        result = FoldResult(fold, name, np.asarray(train), np.asarray(test), y_pred, score,
                            time.perf_counter() - start, fitted if keep_fitted else None)
        if store is not None:  # as soon as it ends, from the process that fitted it
            store.put(key, result)
    return result


def _stored_fold(fold, name, train, test, stored):
    """The :class:`FoldResult` of a fit a store holds (no fitted estimator)."""
    return FoldResult(fold, name, np.asarray(train), np.asarray(test), stored.y_pred,
                      stored.score, stored.fit_time)


def run_folds(models, X, y, splits, *, scorer=None, predict=True, keep_fitted=False, n_jobs=None,
              progress=False, description="cross-validation", store=None):
    """Fit a clone of every model on every fold's training rows; predict or score its test rows.

    The one fold runner of :func:`bmdkit.evaluation.compare_models`,
    :func:`bmdkit.tuning.tune` and
    :class:`bmdkit.uncertainty.ConformalBMDRegressor` (CV+).

    Parameters
    ----------
    models : dict of str to estimator
        Unfitted; each is cloned for every fold.
    X : pandas.DataFrame or array-like
    y : ndarray, or pandas.Series or DataFrame
        Rows are taken by position (:func:`take_rows`).
    splits : list of (train, test) row positions
        E.g. :func:`cv_splits`.
    scorer : callable or None, default=None
        ``scorer(fitted, X_test, y_test)`` (a scikit-learn scorer) gives
        :attr:`FoldResult.score`.
    predict : bool, default=True
        Keep the test rows' predictions (:attr:`FoldResult.y_pred`).
    keep_fitted : bool, default=False
        Keep each fitted clone (:attr:`FoldResult.estimator`; from a worker
        process it is pickled back).
    n_jobs : int or None, default=None
        Fits run in parallel through joblib: ``None`` is 1 unless a
        ``joblib.parallel_config`` says otherwise (any backend, e.g. Dask).
        joblib's default process backend starts each worker with
        ``cpu_count() // n_jobs`` threads for torch (OpenMP), unless
        ``OMP_NUM_THREADS`` is set: on 2 cores two 1-thread fits ran 1.33x
        faster than one 2-thread fit. A fit with an int ``random_state``
        gives the same predictions for any ``n_jobs`` where the thread count
        does not change its sums (see ``BMDRegressor(n_threads=...)``).
    progress : bool, default=False
        A progress bar over folds × models, with the time left.
    description : str, default="cross-validation"
        The progress bar's label.
    store : bmdkit.fit_store.FitStore or None, default=None
        Finished fits: those it holds are not fitted again (their
        :class:`FoldResult` has no ``estimator``; the progress bar counts
        them as done), every other fit is written to it as soon as it ends,
        and SIGINT or SIGTERM stop the fits with
        :class:`~bmdkit.fit_store.FitsInterrupted` (an unfinished fit is
        never stored). The store must have been opened on ``models`` and
        ``splits`` (:meth:`~bmdkit.fit_store.FitStore.open`).

    Yields
    ------
    FoldResult
        Fold by fold, the models in their order within a fold, each as soon
        as it and all before it are done (a consumer may stop early, e.g. an
        Optuna pruner: the fits not started are not run). The progress bar
        counts each fit when it ends, in whatever order parallel fits end.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> X = np.arange(40.0).reshape(20, 2); y = X[:, 0] / 10
    >>> results = list(run_folds({"ridge": Ridge()}, X, y, cv_splits(4, X, y)))
    >>> [r.fold for r in results], results[0].y_pred.shape
    ([0, 1, 2, 3], (5,))
    """
    tasks = [(fold, name, model, train, test) for fold, (train, test) in enumerate(splits)
             for name, model in models.items()]
    keys = [None if store is None else store.key(name, (train, test))
            for _, name, _, train, test in tasks]
    stored = [None if key is None else store.get(key) for key in keys]
    pending = [(task, key) for task, key, done in zip(tasks, keys, stored) if done is None]
    # fits come back as they end (the bar counts each at once), are yielded in task order
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_fit_fold)(fold, name, model, X, y, train, test, scorer, predict, keep_fitted,
                           store, key)
        for (fold, name, model, train, test), key in pending) if pending else iter(())
    finished = len(tasks) - len(pending)
    ended = {}
    with (contextlib.nullcontext() if store is None else store.guard(),
          tqdm(total=len(tasks), initial=finished, desc=description, unit="fit",
               disable=not progress) as bar):
        for (fold, name, _, train, test), done in zip(tasks, stored):
            if done is not None:
                yield _stored_fold(fold, name, train, test, done)
                continue
            while (fold, name) not in ended:
                result = next(results)
                ended[result.fold, result.model] = result
                bar.set_postfix_str(f"fold {result.fold + 1}/{len(splits)}, {result.model}")
                bar.update()
            yield ended.pop((fold, name))
        next(results, None)  # every fit taken: let joblib end, rather than cancel, its run
