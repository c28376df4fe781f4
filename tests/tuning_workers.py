"""Helpers for tests that run several ``bmdkit tune`` worker processes on one study."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import optuna
import pandas as pd

from bmdkit.tuning import make_storage

LINE = re.compile(r"^\[pid (\d+)\] trial (\d+) (\w+)", re.MULTILINE)


def make_metadata_cohort(n, seed=0):
    """A metadata-only cohort: ``X`` (age, sex) and BMD ``y`` (numpy), for fast trials without images."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.uniform(60, 85, n), "sex": rng.choice(["F", "M"], n)})
    y = 1.2 - 0.006 * X["age"].to_numpy() + 0.08 * (X["sex"] == "M").to_numpy() + rng.normal(0, 0.03, n)
    return X, y


def metadata_csv(path, n=120, seed=0):
    """:func:`make_metadata_cohort` as a CSV (age, sex, bmd) for ``bmdkit tune --csv``."""
    X, y = make_metadata_cohort(n, seed)
    X.assign(bmd=y).to_csv(path, index=False)
    return path


def start_worker(csv, storage, study_name, n_trials, log_path, *extra):
    """Start ``bmdkit tune --model metadata`` in a new process logging to ``log_path``."""
    cmd = [sys.executable, "-m", "bmdkit.cli", "tune", "--csv", str(csv), "--target", "bmd",
           "--model", "metadata", "--storage", storage, "--study-name", study_name,
           "--n-trials", str(n_trials), "--folds", "2", *extra]
    log = open(log_path, "w")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()


def stop(processes):
    """Kill workers still running (test clean-up)."""
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def run_two_workers_sharing_a_study(tmp_path, storage, study_name, n_trials=6):
    """Two ``bmdkit tune`` processes on one study; each must record every trial once."""
    csv = metadata_csv(tmp_path / "cohort.csv")
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_worker(csv, storage, study_name, n_trials, log, "--epochs", "3")
               for log in logs]
    try:
        for worker, log in zip(workers, logs):
            assert worker.wait(timeout=300) == 0, log.read_text()[-2000:]
    finally:
        stop(workers)
    return check_every_trial_once(storage, study_name, logs, n_trials=n_trials, n_workers=2)


def reported_trials(log_path):
    """{trial number: state} from the progress lines a worker printed."""
    with open(log_path) as f:
        return {int(number): state for _, number, state in LINE.findall(f.read())}


def check_every_trial_once(storage, study_name, logs, n_trials, n_workers):
    """Each trial of the study was reported by exactly one worker; the budget was met."""
    study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
    trials = study.get_trials(deepcopy=False)
    reported = [reported_trials(log) for log in logs]
    counts = Counter(number for worker in reported for number in worker)
    finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                 optuna.trial.TrialState.PRUNED)]
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    # every finished trial was reported by exactly one worker, in the state it has in the study
    assert {t.number: t.state.name for t in finished} == {
        number: state for worker in reported for number, state in worker.items()}
    assert all(count == 1 for count in counts.values()), counts
    # the shared budget: reached, overshot by at most one trial per other worker
    assert n_trials <= len(finished) <= n_trials + n_workers - 1
    for trial in finished:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert trial.value == np.mean(trial.user_attrs["fold_scores"])
    return study
