"""bmdkit.tuning: search spaces, studies, pruning, and sklearn/Optuna search tools."""

import itertools
import json
import signal
import time

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from optuna_integration import OptunaSearchCV, SkorchPruningCallback
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from tuning_workers import (
    check_every_trial_once,
    make_metadata_cohort,
    metadata_csv,
    run_two_workers_sharing_a_study,
    start_worker,
    stop,
)

from bmdkit import (
    BMDStratifiedKFold,
    ConcatBMDRegressor,
    ImageOnlyBMDRegressor,
    MetadataOnlyBMDRegressor,
    XAttnBMDRegressor,
)
from bmdkit.tuning import CPU_BACKBONES, best_estimator, make_storage, search_space, tune

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def cohort():
    return make_metadata_cohort(90)


def fast_model(**params):
    return MetadataOnlyBMDRegressor(max_epochs=3, random_state=0, **params)


@pytest.mark.parametrize("model, image, layers", [
    (XAttnBMDRegressor(), True, True), (ConcatBMDRegressor(), True, False),
    (ImageOnlyBMDRegressor(), True, False), (MetadataOnlyBMDRegressor(), False, False),
])
def test_search_space_fits_each_model(model, image, layers):
    space = search_space(model)
    assert ("backbone" in space) is image and ("n_layers" in space) is layers
    assert set(space) >= {"lr", "weight_decay", "batch_size", "max_epochs", "dropout",
                          "embed_dim", "n_heads", "loss", "low_bmd_weight", "lds_sigma"}
    assert set(space) <= set(model.get_params())
    for dim, heads in itertools.product(space["embed_dim"].choices, space["n_heads"].choices):
        assert dim % heads == 0
    if image:
        assert space["backbone"].choices == CPU_BACKBONES
    # every sampled configuration is one the estimator accepts
    trial = optuna.create_study().ask(space)
    model.set_params(**trial.params)._check_params()


def test_search_space_rejects_other_estimators():
    from sklearn.linear_model import Ridge

    with pytest.raises(TypeError, match="space="):
        search_space(Ridge())


def test_tune_cross_validates_reports_each_fold_and_rebuilds_the_best(cohort):
    X, y = cohort
    model = fast_model()
    space = {k: v for k, v in search_space(model).items() if k in ("lr", "batch_size")}
    study = tune(model, X, y, cv=BMDStratifiedKFold(3, random_state=0), n_trials=3, space=space)
    assert len(study.trials) == 3
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        scores = trial.user_attrs["fold_scores"]
        assert len(scores) == 3 and all(s < 0 for s in scores)  # neg MSE per fold
        running = [np.mean(scores[: i + 1]) for i in range(3)]
        assert [trial.intermediate_values[i] for i in range(3)] == pytest.approx(running)
        assert trial.value == pytest.approx(np.mean(scores))
    best = best_estimator(model, study)
    assert best.get_params()["lr"] == study.best_params["lr"]
    assert best.get_params()["max_epochs"] == 3  # the estimator's own parameters are kept
    assert best.fit(X, y).predict(X).shape == (len(y),)


def test_pruned_trial_stops_after_its_first_fold(cohort):
    X, y = cohort
    # neg MSE is always below 0: every trial is pruned at the first report
    pruner = optuna.pruners.ThresholdPruner(lower=0.0)
    study = tune(fast_model(), X, y, cv=4, n_trials=2, space={"lr": search_space(fast_model())["lr"]},
                 pruner=pruner)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    assert all(len(t.user_attrs["fold_scores"]) == 1 for t in study.trials)


def test_tune_counts_finished_trials_against_the_budget(tmp_path, cohort):
    X, y = cohort
    storage = str(tmp_path / "journal.log")
    space = {"lr": search_space(fast_model())["lr"]}
    tune(fast_model(), X, y, cv=2, n_trials=2, space=space, storage=storage, study_name="s")
    # a second call on the same study only tops the budget up to 3
    study = tune(fast_model(), X, y, cv=2, n_trials=3, space=space, storage=storage,
                 study_name="s")
    assert len(study.trials) == 3


def test_tune_refuses_a_study_that_minimises(tmp_path, cohort):
    X, y = cohort
    storage = str(tmp_path / "journal.log")
    optuna.create_study(storage=make_storage(storage), study_name="loss", direction="minimize")
    with pytest.raises(ValueError, match=r"'loss'.*journal\.log.*minimize"):
        tune(fast_model(), X, y, cv=2, n_trials=1, storage=storage, study_name="loss",
             space={"lr": search_space(fast_model())["lr"]})
    study = optuna.load_study(study_name="loss", storage=make_storage(storage))
    assert study.trials == []  # refused before any trial ran


def test_tune_refuses_a_study_tuned_with_another_scoring(tmp_path, cohort):
    X, y = cohort
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    space = {"lr": search_space(fast_model())["lr"]}
    study = tune(fast_model(), X, y, cv=2, n_trials=0, space=space, storage=storage,
                 study_name="s", scoring="neg_mean_absolute_error")
    assert study.user_attrs["scoring"] == "neg_mean_absolute_error"
    with pytest.raises(ValueError, match=r"'s'.*study\.db.*neg_mean_absolute_error.*"
                                         r"neg_mean_squared_error"):
        tune(fast_model(), X, y, cv=2, n_trials=1, space=space, storage=storage, study_name="s")
    # the same scoring joins the study
    study = tune(fast_model(), X, y, cv=2, n_trials=1, space=space, storage=storage,
                 study_name="s", scoring="neg_mean_absolute_error")
    assert len(study.trials) == 1


def test_a_scoring_callable_is_recorded_by_name(cohort):
    from sklearn.metrics import make_scorer, mean_absolute_error

    X, y = cohort
    scorer = make_scorer(mean_absolute_error, greater_is_better=False)
    study = tune(fast_model(), X, y, cv=2, n_trials=0, scoring=scorer)
    assert "mean_absolute_error" in study.user_attrs["scoring"]
    assert "0x" not in study.user_attrs["scoring"]  # no address: the same in every process


@pytest.mark.parametrize("url, error, match", [
    ("sqlite://tune.db", ValueError, r"'sqlite://tune\.db' is not a valid database URL"),
    ("postgress://user:secret@db.example/optuna", ValueError,
     r"'postgress://user:\*\*\*@db\.example/optuna' is not a valid database URL"),
    ("sqlite:tune.db", ValueError, r"'sqlite:tune\.db' looks like a database URL without '://'"),
    ("postgresql+psycopg:user@host/db", ValueError, "without '://'"),
])
def test_a_bad_storage_url_fails_at_once_naming_it(monkeypatch, tmp_path, url, error, match):
    monkeypatch.chdir(tmp_path)  # a journal file, had one been made, lands here
    monkeypatch.setattr("bmdkit.tuning.time.sleep", _no_retry)
    with pytest.raises(error, match=match) as raised:
        make_storage(url)
    assert "secret" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_database_driver_fails_at_once_naming_the_url(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("the mysqlclient driver is installed")
    monkeypatch.setattr("bmdkit.tuning.time.sleep", _no_retry)
    with pytest.raises(ImportError, match=r"'mysql://user:\*\*\*@db\.example/optuna'.*MySQLdb") as raised:
        make_storage("mysql://user:secret@db.example/optuna")
    assert "secret" not in str(raised.value)


def test_database_errors_are_retried_and_then_name_the_url(monkeypatch):
    import sqlalchemy.exc

    from bmdkit import tuning

    calls, sleeps = [], []

    def flaky(url, **kwargs):
        calls.append(url)
        if len(calls) < 3:  # e.g. another worker creating the schema at the same moment
            raise sqlalchemy.exc.IntegrityError("CREATE TABLE studies", {}, Exception("duplicate"))
        return "storage"

    monkeypatch.setattr(tuning, "RDBStorage", flaky)
    monkeypatch.setattr("bmdkit.tuning.time.sleep", sleeps.append)
    assert make_storage("postgresql://user:secret@db.example/optuna") == "storage"
    assert len(calls) == 3 and len(sleeps) == 2

    def down(url, **kwargs):
        raise sqlalchemy.exc.OperationalError("connect", {}, Exception("connection refused"))

    monkeypatch.setattr(tuning, "RDBStorage", down)
    with pytest.raises(sqlalchemy.exc.OperationalError) as raised:
        make_storage("postgresql://user:secret@db.example/optuna")
    notes = "\n".join(raised.value.__notes__)
    assert "postgresql://user:***@db.example/optuna" in notes and "secret" not in notes


def _no_retry(seconds):
    raise AssertionError("a bad URL or a missing driver must not be retried")


def test_epoch_pruning_through_skorch_callbacks(cohort):
    """The docs/tuning.md recipe: per-epoch reports of skorch's validation loss."""
    X, y = cohort

    def objective(trial):
        model = MetadataOnlyBMDRegressor(
            max_epochs=20, early_stopping=True, random_state=0,
            lr=trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            callbacks=[SkorchPruningCallback(trial, "valid_loss")])
        model.fit(X, y)
        return model.net_.history[-1, "valid_loss"]

    study = optuna.create_study(direction="minimize",
                                pruner=optuna.pruners.ThresholdPruner(upper=1e-9))
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [0]


def test_optuna_search_cv_over_a_bmdkit_estimator(cohort):
    X, y = cohort
    space = {k: v for k, v in search_space(fast_model()).items() if k in ("lr", "dropout")}
    search = OptunaSearchCV(fast_model(), space, cv=2, n_trials=2, random_state=0,
                            scoring="neg_mean_squared_error")
    search.fit(X, y)
    assert len(search.trials_) == 2 and set(search.best_params_) == {"lr", "dropout"}
    assert search.predict(X).shape == (len(y),)


def test_grid_and_randomized_search_over_a_bmdkit_estimator(cohort):
    X, y = cohort
    grid = GridSearchCV(fast_model(), {"lr": [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert grid.best_params_["lr"] in (1e-3, 1e-2)
    randomized = RandomizedSearchCV(fast_model(), {"batch_size": [8, 16, 32]}, n_iter=2, cv=2,
                                    random_state=0).fit(X, y)
    assert len(randomized.cv_results_["params"]) == 2


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_worker_processes_share_one_study(tmp_path, kind):
    storage = (str(tmp_path / "study.log") if kind == "journal"
               else f"sqlite:///{tmp_path / 'study.db'}")
    run_two_workers_sharing_a_study(tmp_path, storage, "shared")


def test_a_killed_worker_trial_fails_and_the_study_finishes(tmp_path):
    csv = metadata_csv(tmp_path / "cohort.csv")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    args = ("--epochs", "40", "--heartbeat", "1")
    victim, survivor = workers = [start_worker(csv, storage, "s", 4, log, *args)
                                  for log in logs[:2]]
    try:
        running = _wait_for_running_trial(storage, "s", victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert survivor.wait(timeout=300) == 0, logs[1].read_text()[-2000:]
        # a worker started later finds the dead trial stale (no heartbeat for 2 s) if the
        # survivor did not already
        time.sleep(3)
        late = start_worker(csv, storage, "s", 4, logs[2], *args)
        workers.append(late)
        assert late.wait(timeout=300) == 0, logs[2].read_text()[-2000:]
    finally:
        stop(workers)
    study = check_every_trial_once(storage, "s", logs, n_trials=4, n_workers=2)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[running] == TrialState.FAIL
    assert TrialState.RUNNING not in states.values()
    retries = [t for t in study.get_trials(deepcopy=False)
               if t.system_attrs.get("failed_trial") == running]
    assert len(retries) == 1  # re-queued once with the dead trial's parameters
    assert retries[0].params == study.trials[running].params


def _wait_for_running_trial(storage, study_name, process, timeout=120):
    """Number of a trial ``process`` is running (polls the study)."""
    worker = f":{process.pid}"
    storage = make_storage(storage)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the worker ended before it could be killed"
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:  # not created yet
            study = None
        for trial in study.get_trials(deepcopy=False) if study else ():
            if trial.state == TrialState.RUNNING and trial.user_attrs.get("worker", "").endswith(
                    worker) and trial.user_attrs.get("fold_scores") is None:
                return trial.number
        time.sleep(0.2)
    raise AssertionError(f"worker {process.pid} started no trial in {timeout} s")


def test_tune_command_on_the_demo_cohort(tmp_path, monkeypatch, capsys):
    from bmdkit import cli

    monkeypatch.setenv("BMDKIT_DATA_DIR", str(tmp_path / "data"))
    storage = str(tmp_path / "study.log")
    cli.main(["tune", "--demo", "--n-trials", "1", "--folds", "2", "--epochs", "1",
              "--storage", storage, "--study-name", "demo",
              "--best-params", str(tmp_path / "best.json")])
    out, err = capsys.readouterr()
    assert "trial 0 COMPLETE" in err and f"optuna-dashboard {storage}" in err
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["max_epochs"] == 1 and best["backbone"] == "resnet18" and "lr" in best
    study = optuna.load_study(study_name="demo", storage=make_storage(storage))
    assert "max_epochs" not in study.best_params  # fixed on the command line, not searched


def test_tune_command_needs_data(capsys):
    from bmdkit import cli

    with pytest.raises(SystemExit) as exit:
        cli.main(["tune", "--n-trials", "1"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == "bmdkit tune: error: needs --csv and --target, or --demo\n"
