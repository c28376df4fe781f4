import inspect
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from settings import TINY_OPTIONS
from test_report import render_in_browser

import bmdkit
from bmdkit import cli
from bmdkit.cli import demo as demo_command

COMMANDS = ["demo", "cv", "ablation", "fit", "predict", "serve", "report", "pretrain"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_explains_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main([command, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help"
            assert action.option_strings[-1] in text


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "bmdkit.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert all(c in out for c in COMMANDS)


#: Libraries that take seconds to import: ``bmdkit --help`` must not need them.
HEAVY = ("torch", "timm", "skorch", "optuna", "matplotlib", "sqlalchemy")


def test_help_imports_no_heavy_library():
    # a fresh interpreter: what building the parser and every --help import
    code = f"""
import contextlib, io, sys
from bmdkit.cli import COMMANDS, build_parser, main
build_parser()
for argv in [[], *([name] for name in COMMANDS)]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
print(sorted(name for name in {HEAVY!r} if name in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(bmdkit.__file__)))
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def cohort_csv(signal_cohort, tmp_path_factory):
    X, y = signal_cohort
    folder = tmp_path_factory.mktemp("csv")
    table = X.iloc[:60].copy()
    table["bmd"] = y[:60]
    table["subject"] = [f"s{i}" for i in range(60)]
    path = folder / "cohort.csv"
    table.to_csv(path, index=False)
    return path



def test_fit_then_predict(cohort_csv, tmp_path, capsys):
    common = ["--csv", str(cohort_csv), "--drop", "subject"]
    cli.main(["fit", *common, "--target", "bmd", "--model", "concat",
              "--out", str(tmp_path / "model"), *TINY_OPTIONS])
    model = bmdkit.load(tmp_path / "model")
    assert model.fusion == "concat" and model.max_epochs == 1 and model.embed_dim == 16
    assert model.verbose == 1 and "train_loss" in capsys.readouterr().out  # fit shows epochs
    cli.main(["predict", *common, "--target", "bmd", "--model", str(tmp_path / "model"),
              "--out", str(tmp_path / "pred.csv")])
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert {"predicted_bmd", "t_score", "who_category"} <= set(pred.columns)
    assert set(pred["who_category"]) <= {"normal", "osteopenia", "osteoporosis"}
    np.testing.assert_allclose(pred["t_score"], bmdkit.clinical.t_score(pred["predicted_bmd"]))
    assert "who_accuracy" in capsys.readouterr().out
    # the user's rows come back as written: --drop id columns and the target included
    rows = pd.read_csv(cohort_csv)
    assert list(pred.columns) == ["row", *rows.columns, "predicted_bmd", "t_score",
                                  "who_category"]
    assert pred["row"].tolist() == list(range(len(rows)))  # the key --resume goes by
    pd.testing.assert_frame_equal(pred[rows.columns], rows)


def test_fit_conformal_then_predict_intervals_and_referral(cohort_csv, tmp_path, capsys):
    common = ["--csv", str(cohort_csv), "--drop", "subject"]
    cli.main(["fit", *common, "--target", "bmd", "--model", "concat", "--conformal", "cv+",
              "--conformal-folds", "2", "--out", str(tmp_path / "model"), *TINY_OPTIONS])
    cli.main(["predict", *common, "--target", "bmd", "--model", str(tmp_path / "model"),
              "--out", str(tmp_path / "pred.csv"), "--densitometer", "hologic"])
    out = capsys.readouterr().out
    assert "referred to DXA" in out and "coverage" in out
    pred = pd.read_csv(tmp_path / "pred.csv")
    added = ["predicted_bmd", "bmd_lower", "bmd_upper", "t_score", "t_score_lower",
             "t_score_upper", "who_category", "refer"]
    assert list(pred.columns) == ["row", *pd.read_csv(cohort_csv).columns, *added]
    assert (pred["bmd_lower"] < pred["predicted_bmd"]).all()
    assert (pred["predicted_bmd"] < pred["bmd_upper"]).all()
    clinical = bmdkit.clinical
    np.testing.assert_allclose(pred["t_score_upper"],
                               clinical.t_score(pred["bmd_upper"], device="hologic"))
    thresholds = clinical.screening_thresholds(device="hologic").values()
    crosses = [any(lo < t <= hi for t in thresholds)
               for lo, hi in zip(pred["bmd_lower"], pred["bmd_upper"])]
    assert pred["refer"].tolist() == crosses
    # a wider level refers at least as many rows, without refitting
    cli.main(["predict", *common, "--model", str(tmp_path / "model"), "--confidence", "0.99",
              "--out", str(tmp_path / "wide.csv"), "--densitometer", "hologic"])
    wide = pd.read_csv(tmp_path / "wide.csv")
    assert (wide["bmd_upper"] >= pred["bmd_upper"]).all() and wide["refer"].sum() >= sum(crosses)


def test_predict_keeps_relative_image_paths_without_target(cohort_csv, tmp_path, capsys):
    rows = pd.read_csv(cohort_csv).drop(columns="bmd").iloc[:8]
    rows["image_path"] = [os.path.relpath(p, tmp_path) for p in rows["image_path"]]
    rows.to_csv(tmp_path / "new.csv", index=False)
    cli.main(["fit", "--csv", str(cohort_csv), "--target", "bmd", "--drop", "subject",
              "--model", "image", "--out", str(tmp_path / "model"), *TINY_OPTIONS,
              "--param", "verbose=0"])
    assert "train_loss" not in capsys.readouterr().out  # --param verbose=0 wins
    cli.main(["predict", "--csv", str(tmp_path / "new.csv"), "--drop", "subject",
              "--model", str(tmp_path / "model"), "--out", str(tmp_path / "pred.csv")])
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert pred["image_path"].tolist() == rows["image_path"].tolist()
    assert pred["subject"].tolist() == rows["subject"].tolist()
    assert pred["predicted_bmd"].notna().all()


def test_cv_and_report(cohort_csv, tmp_path, capsys):
    cli.main(["cv", "--csv", str(cohort_csv), "--target", "bmd", "--drop", "subject",
              "--models", "concat", "metadata", "--folds", "3", "--out", str(tmp_path / "cv"),
              "--densitometer", "hologic", "--title", "My <cohort>", "--n-jobs", "1", *TINY_OPTIONS])
    out = capsys.readouterr().out
    assert "Concat" in out and "Metadata-only" in out and "Δ mse %" in out
    assert (tmp_path / "cv" / "report.html").is_file()
    for figure in ("scatter", "bland_altman", "roc"):
        assert (tmp_path / "cv" / f"{figure}.png").is_file()
    meta = json.loads((tmp_path / "cv" / "results" / "results.json").read_text())
    assert meta["clinical"]["device"] == "hologic"
    assert meta["thresholds"] == bmdkit.clinical.screening_thresholds(device="hologic")
    assert meta["synthetic"] is False and meta["title"] == "My <cohort>"
    cli.main(["report", "--results", str(tmp_path / "cv" / "results"),
              "--out", str(tmp_path / "again"), "--synthetic"])
    page = (tmp_path / "again" / "report.html").read_text()
    assert "Synthetic data" in page and "My &lt;cohort&gt;" in page  # the saved title


def test_demo_quick(monkeypatch, signal_cohort, tmp_path, capsys):
    X, y = signal_cohort
    seen = {}

    def cohort(n, seed):
        seen.update(n=n, seed=seed)
        return X.iloc[:n], y[:n]
    monkeypatch.setattr(demo_command, "_demo_cohort", cohort)
    cli.main(["demo", "--quick", "--n", "40", "--folds", "2", "--out", str(tmp_path), *TINY_OPTIONS])
    out = capsys.readouterr().out
    assert all(name in out for name in ("XAttn", "Concat", "Image-only", "Metadata-only"))
    assert "SYNTHETIC" in (tmp_path / "report.html").read_text().upper()
    assert seen == {"n": 40, "seed": 0}
    # the headline model of fold 0 explains four of its test rows, in the browser too
    (tmp_path / "browser").mkdir()
    shown = render_in_browser(tmp_path / "report.html", tmp_path / "browser")
    assert shown["figures"]["explanations"] > 300 and shown["scroll"] <= shown["page"]
    assert "Why XAttn says what it says" in shown["dom"]
    meta = json.loads((tmp_path / "results" / "results.json").read_text())
    assert meta["clinical"]["device"] == "lunar" and meta["synthetic"] is True
    # re-drawn without --synthetic, the report still says SYNTHETIC, with the demo's title
    cli.main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "again")])
    page = (tmp_path / "again" / "report.html").read_text()
    assert "Synthetic data" in page and "bmdkit demo: XAttn-BMD and baselines" in page
    assert "bmdkit demo (quick): synthetic hip radiographs" in page  # the description


def test_n_jobs_default_is_every_core_on_the_cpu_and_one_process_on_a_gpu():
    from bmdkit.cli.common import n_jobs

    parse = cli.build_parser().parse_args
    assert n_jobs(parse(["demo"])) == -1  # the demo above ran its fits in two processes
    assert n_jobs(parse(["demo", "--device", "cuda"])) == 1
    assert n_jobs(parse(["demo", "--device", "cuda:1"])) == 1
    assert n_jobs(parse(["demo", "--device", "cpu:0"])) == -1
    assert n_jobs(parse(["demo", "--device", "cuda", "--n-jobs", "3"])) == 3
    assert n_jobs(parse(["ablation", "--n-jobs", "1"])) == 1


def test_model_choices_are_the_registered_fusions():
    from bmdkit.nn import fusion_names

    assert sorted(cli.MODELS) == sorted(fusion_names())


def _option_help(command, dest):
    """The help text of ``command``'s option ``dest``."""
    sub = cli.build_parser()._subparsers._group_actions[0].choices[command]
    return next(action.help for action in sub._actions if action.dest == dest)


@pytest.mark.parametrize("command", ["fit", "cv", "tune"])
def test_help_shows_the_estimators_defaults(command):
    # what a model option left out gives is the estimator's default, and --help says so
    defaults = {name: parameter.default for name, parameter
                in inspect.signature(bmdkit.BMDRegressor).parameters.items()}
    for dest, name in (("epochs", "max_epochs"), ("image_size", "image_size"),
                       ("batch_size", "batch_size"), ("backbone", "backbone"),
                       ("device", "device")):
        assert _option_help(command, dest).endswith(f"(default: {defaults[name]})"), dest


def test_help_shows_the_demo_cohorts_size():
    size = inspect.signature(bmdkit.load_demo_cohort).parameters["n"].default
    assert _option_help("demo", "n") == f"cohort size (default: {size}, the whole cohort)"
    assert _option_help("ablation", "n") == f"cohort size (default: {size})"


def test_ablation_help_shows_its_cohorts_settings(monkeypatch):
    from bmdkit.cli import ablation

    demo, bilateral = ablation.ABLATION_SETTINGS["demo"], ablation.ABLATION_SETTINGS["bilateral"]
    assert _option_help("ablation", "epochs").endswith(
        f"(default: {demo['epochs']} ({bilateral['epochs']} bilateral))")
    for dest in ("folds", "image_size", "backbone"):
        assert _option_help("ablation", dest).endswith(f"(default: {demo[dest]})"), dest
    monkeypatch.setitem(ablation.ABLATION_SETTINGS, "bilateral", {**bilateral, "image_size": 96})
    assert _option_help("ablation", "image_size").endswith(
        f"(default: {demo['image_size']} (96 bilateral))")


def test_ablation_runs_fusions_by_losses_and_quotes_the_paper(monkeypatch, bilateral_signal_cohort,
                                                               tmp_path, capsys):
    X, y = bilateral_signal_cohort
    seen = {}

    def cohort(random_state, bilateral, n=None):
        seen.update(bilateral=bilateral, n=n)
        return X.iloc[:n], y[:n]
    monkeypatch.setattr("bmdkit.datasets.load_demo_cohort", cohort)
    cli.main(["ablation", "--cohort", "bilateral", "--n", "30", "--folds", "2",
              "--fusions", "xattn", "concat", "--losses", "smooth_l1", "weighted_smooth_l1",
              "--n-jobs", "1", "--out", str(tmp_path), *TINY_OPTIONS])
    captured = capsys.readouterr()
    out = captured.out
    assert seen == {"bilateral": True, "n": 30}
    assert "image_tiles (1, 2)" in captured.err  # the bilateral preset encodes each hip alone
    for name in ("XAttn", "Concat", "XAttn +wSL1", "Concat +wSL1", "XAttn vs Concat", "-16.7"):
        assert name in out
    assert "SYNTHETIC" in (tmp_path / "report.html").read_text().upper()


def test_ablation_of_the_weighted_loss_alone_keeps_its_baseline(monkeypatch,
                                                                bilateral_signal_cohort,
                                                                tmp_path, capsys):
    X, y = bilateral_signal_cohort
    monkeypatch.setattr("bmdkit.datasets.load_demo_cohort",
                        lambda random_state, bilateral, n=None: (X.iloc[:n], y[:n]))
    cli.main(["ablation", "--n", "30", "--folds", "2", "--fusions", "xattn", "concat",
              "--losses", "weighted_smooth_l1", "--n-jobs", "1", "--out", str(tmp_path),
              *TINY_OPTIONS])
    assert "XAttn +wSL1 vs Concat +wSL1" in capsys.readouterr().out


def test_demo_help_shows_the_demo_settings(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "None" not in text and "see below" not in text
    assert "(default: resnet10t)" in text and "(default: 64)" in text
    assert "(default: 20; 10 with --quick)" in text and "(default: 10; 3 with --quick)" in text
    assert "(default: 233, the whole cohort)" in text
    assert "(3 folds, 10 epochs;" in text and "(10 folds, 20 epochs;" in text
    assert "--densitometer {hologic,lunar,norland}" in text


def _error(capsys, argv):
    """Exit status and stderr of a command that fails."""
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    return exit.value.code, capsys.readouterr().err


def test_bad_column_is_a_clear_error(cohort_csv, tmp_path, capsys):
    code, err = _error(capsys, ["fit", "--csv", str(cohort_csv), "--target", "nope",
                                "--out", str(tmp_path)])
    assert code == 2 and err.startswith("bmdkit fit: error: ")
    assert "'nope'" in err and "not found" in err and "Traceback" not in err
    code, err = _error(capsys, ["fit", "--csv", str(cohort_csv), "--target", "bmd",
                                "--drop", "subjects", "--out", str(tmp_path)])
    assert code == 2 and "(--drop) column" in err and "'subjects'" in err


def test_bad_rows_are_named(cohort_csv, tmp_path, capsys):
    rows = pd.read_csv(cohort_csv)
    rows.loc[3, "bmd"] = np.nan
    rows.to_csv(tmp_path / "nan_target.csv", index=False)
    code, err = _error(capsys, ["fit", "--csv", str(tmp_path / "nan_target.csv"),
                                "--target", "bmd", "--out", str(tmp_path / "m")])
    assert code == 2 and "1 target value missing" in err and "3: nan" in err
    rows.loc[3, "bmd"] = 0.8
    rows.loc[5, "image_path"] = np.nan
    rows.to_csv(tmp_path / "no_image.csv", index=False)
    code, err = _error(capsys, ["cv", "--csv", str(tmp_path / "no_image.csv"), "--target", "bmd",
                                "--out", str(tmp_path / "cv")])
    assert code == 2 and err.startswith("bmdkit cv: error: ") and "row 5: no image path" in err
    assert not (tmp_path / "m").exists() and not (tmp_path / "cv").exists()


def test_missing_files_are_clear_errors(cohort_csv, tmp_path, capsys):
    code, err = _error(capsys, ["predict", "--csv", str(cohort_csv), "--model",
                                str(tmp_path / "nothing"), "--out", str(tmp_path / "p.csv")])
    assert code == 2 and err.startswith("bmdkit predict: error: ") and "nothing" in err
    code, err = _error(capsys, ["report", "--results", str(tmp_path), "--out", str(tmp_path)])
    assert code == 2 and "not a saved results folder" in err
    code, err = _error(capsys, ["cv", "--csv", str(tmp_path / "absent.csv"), "--target", "bmd",
                                "--out", str(tmp_path / "cv")])
    assert code == 2 and "absent.csv" in err


def test_metadata_only_needs_no_images(cohort_csv, tmp_path):
    rows = pd.read_csv(cohort_csv).drop(columns="image_path")
    rows.to_csv(tmp_path / "metadata.csv", index=False)
    args = cli.build_parser().parse_args(["fit", "--csv", str(tmp_path / "metadata.csv"),
                                          "--target", "bmd", "--drop", "subject",
                                          "--model", "metadata", "--out", str(tmp_path)])
    X, y = cli.read_data(args)
    assert list(X.columns) == ["age", "sex"] and len(y) == 60


def test_tune_counts_missing_values_once(cohort_csv, tmp_path, monkeypatch, capsys):
    from bmdkit import tuning
    from bmdkit.checks import ImputationWarning

    rows = pd.read_csv(cohort_csv)
    rows.loc[[1, 2], "age"] = np.nan
    rows.to_csv(tmp_path / "missing.csv", index=False)
    seen = {}

    class NoTrials:
        @property
        def best_trial(self):
            raise ValueError("no trials")

    def fake_tune(model, X, y, *, cv, **kwargs):
        warnings.warn("in a fit", ImputationWarning, stacklevel=2)  # silenced: counted before
        seen.update(folds=cv.n_splits, rows=len(X))
        return NoTrials()
    monkeypatch.setattr(tuning, "tune", fake_tune)
    with pytest.warns(ImputationWarning) as caught:
        cli.main(["tune", "--csv", str(tmp_path / "missing.csv"), "--target", "bmd",
                  "--drop", "subject", "--storage", str(tmp_path / "study.log")])
    assert [str(w.message) for w in caught] == [
        "imputed 2 missing metadata values (age: 2); numeric columns get the median of the "
        "training rows, categorical ones an 'unknown' code"]
    assert seen == {"folds": 5, "rows": 60}
    assert "60 rows, 5 folds" in capsys.readouterr().err


def test_warnings_are_shown_as_one_sentence_not_a_source_line():
    import argparse

    shown = {}

    def command(args):
        shown["text"] = warnings.formatwarning(
            "imputed 2 missing metadata values", UserWarning, "bmdkit/cli/cv.py", 59,
            "warn_missing_values(X, ...)")
    python_format = warnings.formatwarning
    cli.run_command(argparse.Namespace(command="cv", func=command))
    assert shown["text"] == "bmdkit cv: warning: imputed 2 missing metadata values\n"
    assert warnings.formatwarning is python_format  # restored afterwards


def test_a_misspelt_param_is_named_with_the_closest_parameter(cohort_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["fit", "--csv", str(cohort_csv), "--target", "bmd", "--drop", "subject",
                  "--out", str(tmp_path / "model"), "--param", "lrr=0.1"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "BMDRegressor has no parameter 'lrr' (did you mean 'lr'?)" in err


def test_only_bmdkit_errors_become_messages_others_keep_their_traceback(capsys):
    import argparse

    from bmdkit.errors import BMDKitError, ParameterError

    def bad_option(args):
        raise ParameterError("--workers must be 0 or more, got -1")

    def bug(args):
        raise ValueError("a bug, not bad input")
    with pytest.raises(SystemExit) as exit:
        cli.run_command(argparse.Namespace(command="predict", func=bad_option))
    assert exit.value.code == 2
    assert capsys.readouterr().err == "bmdkit predict: error: --workers must be 0 or more, got -1\n"
    with pytest.raises(ValueError, match="a bug") as raised:
        cli.run_command(argparse.Namespace(command="predict", func=bug))
    assert not isinstance(raised.value, BMDKitError)
