"""Optuna hyperparameter studies for bmdkit estimators.

:func:`search_space` gives each named model's default space as
``optuna.distributions`` (usable by :func:`tune` and by
``optuna_integration.OptunaSearchCV``); :func:`tune` runs a study whose trials
cross-validate a clone of the estimator; :func:`best_estimator` rebuilds the
winner. Several processes or machines calling :func:`tune` with the same
storage and study name share one study and one trial budget; see
docs/tuning.md. Needs the ``tune`` extra: ``pip install "bmdkit[tune]"``.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
import warnings

import numpy as np

from bmdkit.errors import ParameterError
from bmdkit.extras import MissingExtraError

try:
    import optuna
    import sqlalchemy.exc
except ModuleNotFoundError as error:  # optuna (and its sqlalchemy) come with the tune extra
    raise MissingExtraError("tune", "bmdkit.tuning", error.name) from error

from filelock import FileLock
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback, StudyDirection
from optuna.trial import TrialState
from sklearn.base import clone
from sklearn.metrics import check_scoring
from sqlalchemy.engine import make_url

from bmdkit.folds import cv_splits, run_folds
from bmdkit.preprocessing import as_frame
from bmdkit.registry import LOSSES

__all__ = ["CPU_BACKBONES", "best_estimator", "make_storage", "progress_line", "search_space", "tune"]

#: timm backbones that train in seconds per epoch on a CPU at small image sizes (the
#: depthwise convolutions of MobileNet/EfficientNet train several times slower on a CPU).
CPU_BACKBONES = ("resnet10t", "resnet18", "resnet34")

#: States counted against a study's trial budget (a failed trial is retried, not counted).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def search_space(estimator):
    """The default Optuna search space of a bmdkit estimator.

    Training parameters (learning rate, weight decay, batch size, epochs),
    the fusion's sizes (token width, heads, dropout; cross-attention layers
    for ``"xattn"``), the loss weighting and, for models that see images,
    the backbone among :data:`CPU_BACKBONES`.

    Parameters
    ----------
    estimator : BMDRegressor
        Any bmdkit estimator; its ``fusion`` selects the parameters.

    Returns
    -------
    dict of str to optuna.distributions.BaseDistribution
        Flat (no conditional parameters), so it also serves as
        ``OptunaSearchCV(param_distributions=...)``. Every ``embed_dim``
        choice is divisible by every ``n_heads`` choice.

    Examples
    --------
    >>> from bmdkit import MetadataOnlyBMDRegressor, XAttnBMDRegressor
    >>> sorted(search_space(XAttnBMDRegressor()))  # doctest: +NORMALIZE_WHITESPACE
    ['backbone', 'batch_size', 'dropout', 'embed_dim', 'lds_power', 'lds_sigma', 'loss',
     'low_bmd_weight', 'lr', 'max_epochs', 'n_heads', 'n_layers', 'weight_decay']
    >>> "backbone" in search_space(MetadataOnlyBMDRegressor())
    False
    """
    fusion = getattr(estimator, "fusion", None)
    if fusion is None:
        raise ParameterError(f"search_space needs a bmdkit estimator, got {type(estimator).__name__}; "
                        "pass space= to tune() for other estimators")
    space = {
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
        "batch_size": CategoricalDistribution((8, 16, 32)),
        "max_epochs": IntDistribution(10, 50, step=10),
        "dropout": FloatDistribution(0.0, 0.5),
        "embed_dim": CategoricalDistribution((32, 64, 128)),
        "n_heads": CategoricalDistribution((2, 4, 8)),
        "loss": CategoricalDistribution(LOSSES.names("ablation")),
        "low_bmd_weight": FloatDistribution(1.0, 4.0),
        "lds_power": FloatDistribution(0.0, 1.0),
        "lds_sigma": FloatDistribution(0.5, 4.0),
    }
    from bmdkit.nn import fusion_class

    if fusion_class(fusion).has_attention:
        space["n_layers"] = IntDistribution(1, 4)
    if fusion_class(fusion).uses_image:
        space["backbone"] = CategoricalDistribution(CPU_BACKBONES)
    return space


def make_storage(storage, *, heartbeat_interval=60, grace_period=None, max_retry=1):
    """An Optuna storage from a URL or a journal file path.

    Parameters
    ----------
    storage : str, os.PathLike, optuna.storages.BaseStorage or None
        ``None``: in memory (this process only). A database URL
        (``sqlite:///tune.db``, ``postgresql://user@host/db``): an
        ``RDBStorage`` with heartbeats, so that the trial of a worker that
        died is marked FAIL and retried. Any other string or path: a journal
        file (``JournalFileBackend``), safe for several processes on one
        machine (or on a file system with working locks) but without
        heartbeats. A string that starts like a URL but lacks ``://``
        (``sqlite:tune.db``) is an error, not a journal file name (write
        ``./sqlite:tune.db`` for such a file). A storage object is returned
        unchanged.
    heartbeat_interval : int, default=60
        Seconds between a running trial's heartbeats (database URLs only).
    grace_period : int or None, default=None
        Seconds without a heartbeat after which a running trial is failed
        (default: twice ``heartbeat_interval``).
    max_retry : int, default=1
        How often a failed trial is re-queued with the same parameters.

    Returns
    -------
    optuna.storages.BaseStorage or None

    Raises
    ------
    ValueError
        ``storage`` is not a valid database URL (``sqlite://tune.db``,
        ``sqlite:tune.db``, an unknown dialect); the message names the URL
        (password hidden).
    ImportError
        The URL's database driver is not installed (e.g. ``psycopg`` for
        ``postgresql+psycopg://``).

    Notes
    -----
    A new SQLite file is initialised under a file lock and a new PostgreSQL
    schema with retries, so several workers may start at once: database
    errors (the schema created by another worker at the same moment, a
    server still starting) are retried for a few seconds; a bad URL or a
    missing driver fails at once.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> type(make_storage(f"sqlite:///{folder}/tune.db")).__name__
    'RDBStorage'
    >>> type(make_storage(os.path.join(folder, "tune.log"))).__name__
    'JournalStorage'
    """
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if isinstance(storage, str) and "://" not in storage and _URL_WITHOUT_SLASHES.match(storage):
        raise ParameterError(f"storage {storage!r} looks like a database URL without '://': write "
                         "e.g. 'sqlite:///tune.db' for a database, or './' before the name for "
                         "a journal file")
    storage = os.fspath(storage)
    if "://" not in storage:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(storage))
    with warnings.catch_warnings():  # heartbeats and retries are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _rdb_storage(storage, heartbeat_interval, grace_period, max_retry)


#: ``scheme:`` or ``dialect+driver:`` at the start of a string (two letters at least, so
#: that a Windows drive letter ``C:`` is not one).
_URL_WITHOUT_SLASHES = re.compile(r"[A-Za-z][A-Za-z0-9.\-]+(\+[A-Za-z0-9_.\-]+)?:")


def _hide_password(url):
    """``url`` with its password masked (``***``), for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:  # not parseable: it carries no recognisable password
        return url


def _redact(text, url):
    """``text`` (an error message) without the password of ``url``."""
    try:
        password = make_url(url).password
    except sqlalchemy.exc.ArgumentError:
        return text
    return text.replace(str(password), "***") if password else text


def _rdb_storage(storage, heartbeat_interval, grace_period, max_retry):
    kwargs = dict(
        heartbeat_interval=heartbeat_interval, grace_period=grace_period,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
    )
    try:
        if storage.startswith("sqlite:///"):
            # wait for the database lock instead of failing at once; create the schema once
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
            with FileLock(storage[len("sqlite:///"):] + ".lock", timeout=300):
                return RDBStorage(storage, **kwargs)
        return _retry_database_errors(lambda: RDBStorage(storage, **kwargs), storage)
    except sqlalchemy.exc.ArgumentError as error:  # no retry: the URL itself is wrong
        raise ParameterError(f"storage {_hide_password(storage)!r} is not a valid database URL: "
                         f"{_redact(str(error), storage)}") from error
    except ImportError as error:  # the dialect's driver is missing
        cause = error.__cause__ or error
        raise ImportError(f"storage {_hide_password(storage)!r} needs a module that is not "
                          f"installed ({_redact(str(cause), storage)}): install the database "
                          "driver of the URL, e.g. pip install 'psycopg[binary]' for "
                          "postgresql+psycopg://") from error


def _retry_database_errors(connect, url, attempts=5):
    """``connect()``, retried on database errors: two workers creating the schema at once
    (one wins, the retry loads it) or a server not yet accepting connections."""
    for attempt in range(attempts):
        try:
            return connect()
        except (sqlalchemy.exc.DatabaseError, optuna.exceptions.StorageInternalError) as error:
            if attempt == attempts - 1:
                error.add_note(f"storage: {_hide_password(url)} ({attempts} attempts)")
                raise
            time.sleep(0.5 * (attempt + 1))


def _suggest(trial, name, distribution):
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    suggest = trial.suggest_int if isinstance(distribution, IntDistribution) else trial.suggest_float
    return suggest(name, distribution.low, distribution.high, step=distribution.step,
                   log=distribution.log)


def _objective(estimator, X, y, splits, scorer, space, n_jobs):

    def objective(trial):
        params = {name: _suggest(trial, name, dist) for name, dist in space.items()}
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        model = clone(estimator).set_params(**params)
        scores = []
        folds = run_folds({"trial": model}, X, y, splits, scorer=scorer, predict=False,
                          n_jobs=n_jobs)
        for step, fold in enumerate(folds):
            scores.append(fold.score)
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                trial.set_user_attr("fold_scores", scores)
                raise optuna.TrialPruned(f"pruned after fold {step + 1} of {len(splits)}")
        trial.set_user_attr("fold_scores", scores)
        return float(np.mean(scores))

    return objective


def tune(estimator, X, y, *, cv=5, groups=None, n_trials=20, scoring="neg_mean_squared_error", storage=None,
         study_name=None, timeout=None, pruner=None, sampler=None, space=None, n_jobs=1,
         callbacks=None, heartbeat_interval=60, grace_period=None):
    """Tune an estimator's hyperparameters in an Optuna study.

    Each trial draws parameters from ``space``, cross-validates a clone of
    ``estimator`` with them and returns the mean score (higher is better).
    After each fold the running mean is reported, so ``pruner`` can stop a
    hopeless trial early.

    Parameters
    ----------
    estimator : estimator
        Usually a bmdkit estimator; its own parameters are kept except those
        in ``space``.
    X : pandas.DataFrame
    y : array-like of shape (n_samples,)
    cv : int or CV splitter, default=5
        An int: that many folds of :class:`bmdkit.BMDStratifiedKFold`
        (shuffled, stratified on BMD, ``random_state=0``), or of
        :class:`bmdkit.BMDStratifiedGroupKFold` with ``groups``. Every trial,
        every call and every worker of a shared study uses the same folds
        (a splitter that shuffles without a seed is warned about).
    groups : array-like of shape (n_samples,) or None, default=None
        E.g. a patient id per row: passed to ``cv.split``, and no group may
        straddle a fold's training and test rows (else ValueError).
    n_trials : int or None, default=20
        Trial budget of the whole study: finished trials (complete or
        pruned) from all processes count, so workers that share a study stop
        together (one extra trial per concurrent worker at most). ``None``
        runs until ``timeout``.
    scoring : str or callable, default="neg_mean_squared_error"
        A scikit-learn scorer (see :func:`bmdkit.metrics.scorers`).
    storage : str, path, optuna storage or None, default=None
        See :func:`make_storage`: ``None`` in memory, a database URL, or a
        journal file path.
    study_name : str or None, default=None
        Processes passing the same storage and name share the study
        (created by whichever starts first). An existing study must maximise
        and must have been tuned with the same ``scoring`` (kept in its
        ``user_attrs["scoring"]``); otherwise :class:`ValueError`.
    timeout : float or None, default=None
        Seconds after which this process starts no new trial.
    pruner : optuna.pruners.BasePruner or None, default=None
        ``None``: ``MedianPruner(n_startup_trials=5, n_warmup_steps=1)``
        (prunes on the running mean from the second fold on).
    sampler : optuna.samplers.BaseSampler or None, default=None
        Optuna's default (TPE) when ``None``. Seed it only in a single
        process: seeded workers would propose the same parameters.
    space : dict or None, default=None
        Parameter name to ``optuna.distributions`` object; default
        :func:`search_space` of ``estimator``.
    n_jobs : int, default=1
        Folds fitted in parallel through joblib (any active joblib backend,
        e.g. Dask: see docs/scaleout.md), by the fold runner of
        :func:`bmdkit.evaluation.compare_models` (:func:`bmdkit.folds.run_folds`:
        each worker process runs torch with ``cpu_count() // n_jobs``
        threads). The running mean is reported as folds finish in order.
    callbacks : list of callable or None, default=None
        Extra ``callback(study, trial)`` run after each trial.
    heartbeat_interval, grace_period : int
        Heartbeats of database storages (see :func:`make_storage`).

    Returns
    -------
    optuna.Study
        Trials keep ``user_attrs["fold_scores"]`` and ``user_attrs["worker"]``
        (host:pid); the study keeps ``user_attrs["scoring"]``.

    Raises
    ------
    ValueError
        The named study exists in ``storage`` but minimises, or was tuned
        with another ``scoring``; or ``storage`` is not a valid URL (see
        :func:`make_storage`).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from bmdkit import MetadataOnlyBMDRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"age": rng.uniform(50, 90, 120), "sex": rng.choice(["F", "M"], 120)})
    >>> y = 1.2 - 0.006 * X["age"] + 0.1 * (X["sex"] == "M") + rng.normal(0, 0.05, 120)
    >>> model = MetadataOnlyBMDRegressor(max_epochs=3, random_state=0)
    >>> space = {"lr": search_space(model)["lr"]}
    >>> study = tune(model, X, y, cv=2, n_trials=2, space=space)
    >>> len(study.trials), sorted(study.best_params)
    (2, ['lr'])
    >>> best_estimator(model, study).lr == study.best_params["lr"]
    True
    """
    space = search_space(estimator) if space is None else dict(space)
    X = as_frame(X)
    y = np.asarray(y, dtype=np.float64)
    if getattr(cv, "shuffle", False) and getattr(cv, "random_state", 0) is None:
        warnings.warn(f"cv={cv!r} shuffles without a random_state: each call and each worker "
                      "of a shared study scores on other folds; give it a random_state",
                      UserWarning, stacklevel=2)
    splits = cv_splits(cv, X, y, groups, default=5)
    scorer = check_scoring(estimator, scoring=scoring)
    if pruner is None:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    where = _describe_storage(storage)
    storage = make_storage(storage, heartbeat_interval=heartbeat_interval,
                           grace_period=grace_period)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                                pruner=pruner, sampler=sampler, load_if_exists=True)
    _check_study(study, _scoring_name(scoring), where)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # trials of workers that died before we came
    callbacks = list(callbacks or [])
    remaining = None
    if n_trials is not None:
        callbacks.insert(0, MaxTrialsCallback(n_trials, states=FINISHED))
        remaining = n_trials - len(study.get_trials(deepcopy=False, states=FINISHED))
        if remaining <= 0:
            return study
    study.optimize(_objective(estimator, X, y, splits, scorer, space, n_jobs), n_trials=remaining,
                   timeout=timeout, callbacks=callbacks, catch=())
    return study


def _describe_storage(storage):
    """The storage argument of :func:`tune` as a message shows it (a URL's password hidden)."""
    if storage is None:
        return "in-memory storage"
    if isinstance(storage, optuna.storages.BaseStorage):
        return type(storage).__name__
    storage = os.fspath(storage)
    return _hide_password(storage) if "://" in storage else storage


def _scoring_name(scoring):
    """``scoring`` as a string to store with the study and compare (the same across processes)."""
    if scoring is None or isinstance(scoring, str):
        return str(scoring)
    if hasattr(scoring, "__qualname__"):  # a function: its name, not its address
        return f"{getattr(scoring, '__module__', '')}.{scoring.__qualname__}"
    text = repr(scoring)  # e.g. make_scorer(mean_absolute_error, greater_is_better=False)
    if " at 0x" in text:  # a default repr: its address differs from process to process
        text = f"{type(scoring).__module__}.{type(scoring).__qualname__}"
    return text


def _check_study(study, scoring, where):
    """Refuse an existing study that minimises or was tuned with another scoring."""
    if study.directions != [StudyDirection.MAXIMIZE]:
        directions = ", ".join(d.name.lower() for d in study.directions)
        raise ParameterError(
            f"study {study.study_name!r} in {where} exists with direction {directions}; tune "
            "maximises a scikit-learn score (higher is better): use another study_name or "
            "delete the study")
    stored = study.user_attrs.get("scoring")
    if stored is None:  # a new study (or one created outside tune): record the scoring
        study.set_user_attr("scoring", scoring)
        # read back: of two workers creating the study at once with different scorings, the
        # one whose write was overwritten usually sees the other's here
        stored = study.user_attrs.get("scoring", scoring)
    if stored != scoring:
        raise ParameterError(
            f"study {study.study_name!r} in {where} was tuned with scoring={stored!r}, not "
            f"scoring={scoring!r}: scores of both cannot share one study; use another "
            "study_name or the same scoring")


def best_estimator(estimator, study):
    """An unfitted clone of ``estimator`` with the study's best parameters.

    Examples
    --------
    >>> import optuna
    >>> from bmdkit import XAttnBMDRegressor
    >>> study = optuna.create_study(direction="maximize")
    >>> study.add_trial(optuna.trial.create_trial(
    ...     params={"lr": 3e-4}, distributions={"lr": search_space(XAttnBMDRegressor())["lr"]},
    ...     value=-0.01))
    >>> best_estimator(XAttnBMDRegressor(max_epochs=5), study).get_params()["lr"]
    0.0003
    """
    return clone(estimator).set_params(**study.best_params)


def progress_line(study, trial, file=None):
    """Print one line about a finished trial: number, state, value, best so far, parameters.

    A ``callback(study, trial)`` for :func:`tune` (the ``bmdkit tune`` command uses it).
    """
    value = "" if trial.value is None else f" score={trial.value:.5g}"
    try:
        best = f" best={study.best_value:.5g} (trial {study.best_trial.number})"
    except ValueError:  # no completed trial yet
        best = ""
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in trial.params.items())
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    print(f"[pid {os.getpid()}] trial {trial.number} {trial.state.name}"
          f"{value}{best} finished={finished} | {params}", file=file or sys.stderr, flush=True)
