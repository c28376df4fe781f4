"""Long runs that survive: resumable comparisons (``--resume``) and checkpointed fits."""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from settings import TINY_OPTIONS
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge

import bmdkit
from bmdkit import cli
from bmdkit.evaluation import compare_models
from bmdkit.fit_store import FitStore, StoreMismatchError

ROOT = Path(bmdkit.__file__).parent.parent


@pytest.fixture(scope="module")
def cohort_csv(signal_cohort, tmp_path_factory):
    X, y = signal_cohort
    table = X.iloc[:48].copy()
    table["bmd"] = y[:48]
    path = tmp_path_factory.mktemp("resume") / "cohort.csv"
    table.to_csv(path, index=False)
    return path


def cv_args(csv, out, *extra):
    return ["cv", "--csv", str(csv), "--target", "bmd", "--models", "concat", "metadata",
            "--folds", "3", "--out", str(out), *TINY_OPTIONS, *extra]


def bmdkit_process(argv, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "bmdkit.cli", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_fits(store, n, process, timeout=240):
    """Wait until the store under ``store`` holds ``n`` finished fits (the process still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fits = sorted((store / "fits").glob("*.npz"))
        if len(fits) >= n:
            return fits
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no {n} fits in {store} after {timeout} s")


def assert_same_results(a, b):
    """Two saved comparisons hold the same predictions and fold scores (fit times aside)."""
    a, b = Path(a) / "results", Path(b) / "results"
    pd.testing.assert_frame_equal(pd.read_csv(a / "predictions.csv"),
                                  pd.read_csv(b / "predictions.csv"))
    scores_a, scores_b = (pd.read_csv(p / "fold_scores.csv").drop(columns="fit_time")
                          for p in (a, b))
    pd.testing.assert_frame_equal(scores_a, scores_b)


def test_compare_models_reuses_stored_fits_and_refuses_other_data(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = 0.85 + 0.1 * X[:, 0] + rng.normal(0, 0.03, 60)
    models = {"ridge": Ridge(), "mean": DummyRegressor()}
    first = compare_models(models, X, y, cv=3, progress=False, checkpoint_dir=tmp_path)
    fits = sorted((tmp_path / "fits").glob("*.npz"))
    assert len(fits) == 6
    stamps = [f.stat().st_mtime_ns for f in fits]
    again = compare_models(models, X, y, cv=3, progress=False, checkpoint_dir=tmp_path)
    assert [f.stat().st_mtime_ns for f in fits] == stamps  # nothing refitted
    pd.testing.assert_frame_equal(first.predictions, again.predictions)
    pd.testing.assert_frame_equal(first.fold_scores, again.fold_scores)
    # a model added later is fitted, the others reused; verbose does not change a fit
    more = compare_models({**models, "ridge2": Ridge(alpha=2.0)}, X, y, cv=3, progress=False,
                          checkpoint_dir=tmp_path)
    assert len(list((tmp_path / "fits").glob("*.npz"))) == 9 and len(more.model_names) == 3
    for changed, match in (((X, y + 0.01, 3, models), "other data"),
                           ((X, y, 4, models), "other folds"),
                           ((X, y, 3, {"ridge": Ridge(alpha=0.5)}), r"\['ridge'\]")):
        X_, y_, cv, models_ = changed
        with pytest.raises(StoreMismatchError, match=match):
            compare_models(models_, X_, y_, cv=cv, progress=False, checkpoint_dir=tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StoreMismatchError, match="not a store"):
        FitStore(tmp_path / "other", X, y).open(models, [])


def test_a_damaged_store_or_checkpoint_is_named_not_a_traceback(tmp_path):
    from types import SimpleNamespace

    import torch

    from bmdkit.checkpoint import EpochCheckpoint, checkpoint_callbacks
    from bmdkit.errors import FileClashError, SavedFileError

    X, y = pd.DataFrame({"a": np.arange(6.0)}), np.arange(6.0)
    (tmp_path / "store").mkdir()
    manifest = tmp_path / "store" / "manifest.json"
    for text, match in (("{not json", "not valid JSON"), ('{"version": 1}', "not a manifest")):
        manifest.write_text(text)
        with pytest.raises(StoreMismatchError, match=match):
            FitStore(tmp_path / "store", X, y).open({"ridge": Ridge()}, [])
    (tmp_path / "a_file").write_text("mine")
    for inside in (tmp_path / "a_file", tmp_path / "a_file" / "checkpoint"):
        with pytest.raises(StoreMismatchError, match="a_file is a file"):
            FitStore(inside, X, y).open({"ridge": Ridge()}, [])
    with pytest.raises(FileClashError, match="checkpoint_dir .*a_file is a file"):
        checkpoint_callbacks(SimpleNamespace(checkpoint_dir=tmp_path / "a_file"), X, y, None)
    checkpoint = EpochCheckpoint(tmp_path / "ckpt", "fingerprint").initialize()
    checkpoint.path.parent.mkdir()
    for damaged in (b"", b"hello", b"PK\x03\x04 cut short"):
        checkpoint.path.write_bytes(damaged)
        with pytest.raises(SavedFileError, match=f"checkpoint {checkpoint.path} is damaged"):
            checkpoint.read()
    for history in ("{not json", "5"):
        torch.save({"history": history}, checkpoint.path)
        with pytest.raises(SavedFileError, match=f"checkpoint {checkpoint.path} is damaged"):
            checkpoint.read()


def test_cv_killed_and_resumed_equals_an_uninterrupted_run(cohort_csv, tmp_path, capsys):
    out = tmp_path / "killed"
    store = out / "checkpoint"
    process = bmdkit_process(cv_args(cohort_csv, out, "--n-jobs", "1"))
    try:
        done = wait_for_fits(store, 2, process)
    finally:
        process.kill()  # SIGKILL: nothing of bmdkit runs after it
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    finished = {f.name: f.stat().st_mtime_ns for f in (store / "fits").glob("*.npz")}
    assert 2 <= len(finished) < 6 and not (out / "results").exists()
    assert {f.name for f in done} <= set(finished)
    capsys.readouterr()
    cli.main(cv_args(cohort_csv, out, "--n-jobs", "1", "--resume"))
    assert f"{len(finished)}/6 [" in capsys.readouterr().err  # the bar counts the reused fits
    after = {f.name: f.stat().st_mtime_ns for f in (store / "fits").glob("*.npz")}
    assert len(after) == 6
    assert {name: after[name] for name in finished} == finished  # none of them fitted again
    cli.main(cv_args(cohort_csv, tmp_path / "whole", "--n-jobs", "1"))
    assert_same_results(out, tmp_path / "whole")
    # a new run without --resume discards the fits it finds
    capsys.readouterr()
    cli.main(cv_args(cohort_csv, tmp_path / "whole", "--n-jobs", "1", "--models", "metadata"))
    assert "discarding 6 finished fits of an earlier run" in capsys.readouterr().err
    assert len(list((tmp_path / "whole" / "checkpoint" / "fits").glob("*.npz"))) == 3


def test_sigint_leaves_a_resumable_folder_with_n_jobs(cohort_csv, tmp_path):
    out = tmp_path / "cv"
    argv = cv_args(cohort_csv, out, "--n-jobs", "2")
    process = bmdkit_process(argv, start_new_session=True)
    try:
        wait_for_fits(out / "checkpoint", 1, process)
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C: to the command and its workers
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGINT, err
    assert "stopped by SIGINT" in err and "finished fits kept in" in err
    resume = err.partition("Resume with:\n")[2].splitlines()[0].split()
    assert resume[:2] == ["bmdkit", "cv"] and resume[-1] == "--resume"
    assert not (out / "results").exists()
    cli.main(resume[1:])  # the printed command finishes the run
    assert len(list((out / "checkpoint" / "fits").glob("*.npz"))) == 6
    assert len(pd.read_csv(out / "results" / "fold_scores.csv")) == 6


def test_resume_against_changed_data_is_refused(cohort_csv, tmp_path, capsys):
    out = tmp_path / "cv"
    args = ["cv", "--csv", str(cohort_csv), "--target", "bmd", "--models", "metadata",
            "--folds", "2", "--out", str(out), "--n-jobs", "1", *TINY_OPTIONS]
    cli.main(args)
    changed = pd.read_csv(cohort_csv)
    changed.loc[0, "bmd"] += 0.05
    changed.to_csv(tmp_path / "changed.csv", index=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        cli.main([*args, "--csv", str(tmp_path / "changed.csv"), "--resume"])
    assert exit.value.code == 2
    assert "fitted on other data" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # other settings: other folds
        cli.main([*args, "--folds", "3", "--resume"])
    assert "other folds" in capsys.readouterr().err


#: ``TINY_OPTIONS`` with 8 epochs (time to kill the fit between two), batches of 16, one thread.
KILLABLE_FIT = ["--epochs", "8", "--image-size", "32", "--batch-size", "16", "--param", "embed_dim=16",
            "--param", "n_heads=2", "--param", "n_layers=1", "--param", "n_threads=1"]


def test_fit_killed_and_resumed_predicts_as_an_uninterrupted_fit(cohort_csv, tmp_path, capsys):
    data = ["--csv", str(cohort_csv), "--target", "bmd", "--model", "concat", *KILLABLE_FIT]
    folder = tmp_path / "checkpoint"
    process = bmdkit_process(["fit", *data, "--out", str(tmp_path / "killed"),
                              "--checkpoint", str(folder)])
    try:
        deadline = time.monotonic() + 240
        while not list(folder.glob("checkpoint-*.pt")):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        assert process.poll() is None  # killed with epochs left to train
    finally:
        process.kill()
        process.communicate()
    assert not (tmp_path / "killed").exists()
    capsys.readouterr()
    cli.main(["fit", *data, "--out", str(tmp_path / "resumed"), "--checkpoint", str(folder),
              "--resume"])
    out = capsys.readouterr().out
    assert "Resuming from epoch" in out
    resumed_from = int(out.split("Resuming from epoch ")[1].split()[0])
    assert 1 <= resumed_from < 8
    cli.main(["fit", *data, "--out", str(tmp_path / "whole")])
    X = pd.read_csv(cohort_csv).drop(columns="bmd")
    resumed, whole = (bmdkit.load(tmp_path / name) for name in ("resumed", "whole"))
    assert resumed.checkpoint_dir is None  # the saved model refits from scratch
    np.testing.assert_array_equal(resumed.predict(X), whole.predict(X))
    # resuming with other data is refused (the folder holds checkpoints of another fit only)
    changed = pd.read_csv(cohort_csv)
    changed.loc[0, "age"] += 1
    changed.to_csv(tmp_path / "changed.csv", index=False)
    with pytest.raises(SystemExit) as exit:
        cli.main(["fit", *data, "--csv", str(tmp_path / "changed.csv"), "--out",
                  str(tmp_path / "other"), "--checkpoint", str(folder), "--resume"])
    assert exit.value.code == 2 and "checkpoints of other fits only" in capsys.readouterr().err


def test_early_stopping_keeps_its_best_epoch_across_a_resume(signal_cohort, tmp_path,
                                                             monkeypatch):
    from bmdkit import BMDRegressor
    from bmdkit.checkpoint import EpochCheckpoint

    X, y = signal_cohort[0].iloc[:40], signal_cohort[1][:40]
    params = dict(fusion="concat", image_size=32, max_epochs=8, batch_size=8, embed_dim=16,
                  n_heads=2, n_layers=1, random_state=0, n_threads=1, early_stopping=True,
                  n_iter_no_change=2, validation_fraction=0.25)
    whole = BMDRegressor(**params).fit(X, y)
    save = EpochCheckpoint.on_epoch_end

    def killed_after_two_epochs(self, net, **kwargs):
        save(self, net, **kwargs)
        if len(net.history) == 2:
            raise RuntimeError("killed")
    monkeypatch.setattr(EpochCheckpoint, "on_epoch_end", killed_after_two_epochs)
    with pytest.raises(RuntimeError, match="killed"):
        BMDRegressor(**params, checkpoint_dir=tmp_path).fit(X, y)
    monkeypatch.setattr(EpochCheckpoint, "on_epoch_end", save)
    resumed = BMDRegressor(**params, checkpoint_dir=tmp_path).fit(X, y)
    history = resumed.net_.history
    assert len(history) == len(whole.net_.history) < 8  # stopped early, at the same epoch
    best = [row["epoch"] for row in history if row["valid_loss_best"]][-1]
    assert best == [row["epoch"] for row in whole.net_.history if row["valid_loss_best"]][-1]
    np.testing.assert_array_equal(resumed.predict(X), whole.predict(X))  # the best weights
    # another fit (other parameters, or another fold's rows) keeps its own checkpoint there
    other = BMDRegressor(**{**params, "max_epochs": 2}, checkpoint_dir=tmp_path).fit(X, y)
    assert len(other.net_.history) == 2 and len(list(tmp_path.glob("checkpoint-*.pt"))) == 2


def test_fit_without_checkpoint_offers_no_resume_and_refuses_resume(cohort_csv, tmp_path,
                                                                    capsys, monkeypatch):
    from bmdkit.estimators import BMDRegressor
    from bmdkit.fit_store import FitsInterrupted

    data = ["fit", "--csv", str(cohort_csv), "--target", "bmd", "--model", "concat",
            "--out", str(tmp_path / "model"), *TINY_OPTIONS]
    with pytest.raises(SystemExit) as exit:
        cli.main([*data, "--resume"])
    assert exit.value.code == 2
    assert "--resume needs --checkpoint" in capsys.readouterr().err

    def interrupted(self, X, y, **kwargs):
        raise FitsInterrupted(signal.SIGINT)

    monkeypatch.setattr(BMDRegressor, "fit", interrupted)  # Ctrl-C during the fit
    with pytest.raises(SystemExit) as exit:
        cli.main(data)
    assert exit.value.code == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert "stopped by SIGINT; nothing was saved." in err and "Resume with" not in err


def test_saved_conformal_model_has_no_checkpoint_dir_in_its_template(cohort_csv, tmp_path,
                                                                     monkeypatch):
    from bmdkit.uncertainty import ConformalBMDRegressor

    saved = []
    save = ConformalBMDRegressor.save
    monkeypatch.setattr(ConformalBMDRegressor, "save",
                        lambda self, path, **kwargs: saved.append(self) or save(self, path,
                                                                                **kwargs))
    cli.main(["fit", "--csv", str(cohort_csv), "--target", "bmd", "--model", "concat",
              "--out", str(tmp_path / "model"), "--checkpoint", str(tmp_path / "checkpoint"),
              "--conformal", "split", *TINY_OPTIONS])
    model, = saved
    assert model.estimator.checkpoint_dir is None  # the template too, not only the fits
    assert all(fitted.checkpoint_dir is None for fitted in model.estimators_)


def test_resume_without_the_explained_model_refits_it_for_the_figures(cohort_csv, tmp_path,
                                                                      capsys):
    import shutil

    from bmdkit.cli.cv import CHECKPOINT, EXPLAINED

    out = tmp_path / "cv"
    argv = cv_args(cohort_csv, out, "--n-jobs", "1", "--folds", "2", "--models", "xattn",
                   "concat")  # XAttn the headline, Concat the baseline
    cli.main(argv)
    figures = sorted(p.name for p in out.rglob("*.png") if "explanation" in p.name)
    assert figures
    # as a run killed after the fold-0 fit was stored, before its model was saved
    shutil.rmtree(out / CHECKPOINT / EXPLAINED)
    shutil.rmtree(out / "results")
    for figure in out.rglob("*.png"):
        figure.unlink()
    capsys.readouterr()
    cli.main([*argv, "--resume"])
    assert "refitting XAttn on its first fold" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*.png") if "explanation" in p.name) == figures
    assert (out / CHECKPOINT / EXPLAINED).is_dir()


def test_resumed_parallel_comparison_ends_its_workers_without_cancelling(tmp_path):
    # joblib warns "N tasks ... have been cancelled" when its generator is dropped unfinished:
    # a run whose fits are all (or partly) stored must not leave it so
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = 0.85 + 0.1 * X[:, 0] + rng.normal(0, 0.03, 40)
    models = {"ridge": Ridge(), "mean": DummyRegressor()}
    compare_models(models, X, y, cv=2, progress=False, n_jobs=2, checkpoint_dir=tmp_path)
    for more in ({}, {"ridge2": Ridge(alpha=2.0)}):  # all stored; one model to fit
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compare_models({**models, **more}, X, y, cv=2, progress=False, n_jobs=2,
                           checkpoint_dir=tmp_path)
        assert not [w for w in caught if "cancelled" in str(w.message)], more
