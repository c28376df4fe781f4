import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import bmdkit
from bmdkit import cli

COMMANDS = ["demo", "cv", "fit", "predict", "report"]


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


TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "32",
        "--param", "embed_dim=16", "--param", "n_heads=2", "--param", "n_layers=1"]


def test_fit_then_predict(cohort_csv, tmp_path, capsys):
    common = ["--csv", str(cohort_csv), "--drop", "subject"]
    cli.main(["fit", *common, "--target", "bmd", "--model", "concat",
              "--out", str(tmp_path / "model"), *TINY])
    model = bmdkit.load(tmp_path / "model")
    assert model.fusion == "concat" and model.max_epochs == 1 and model.embed_dim == 16
    cli.main(["predict", *common, "--target", "bmd", "--model", str(tmp_path / "model"),
              "--out", str(tmp_path / "pred.csv")])
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert {"predicted_bmd", "t_score", "who_category"} <= set(pred.columns)
    assert set(pred["who_category"]) <= {"normal", "osteopenia", "osteoporosis"}
    np.testing.assert_allclose(pred["t_score"], bmdkit.clinical.t_score(pred["predicted_bmd"]))
    assert "who_accuracy" in capsys.readouterr().out


def test_cv_and_report(cohort_csv, tmp_path, capsys):
    cli.main(["cv", "--csv", str(cohort_csv), "--target", "bmd", "--drop", "subject",
              "--models", "concat", "metadata", "--folds", "3", "--out", str(tmp_path / "cv"),
              *TINY])
    out = capsys.readouterr().out
    assert "Concat" in out and "Metadata-only" in out and "Δ mse %" in out
    assert (tmp_path / "cv" / "report.html").is_file()
    for figure in ("scatter", "bland_altman", "roc"):
        assert (tmp_path / "cv" / f"{figure}.png").is_file()
    cli.main(["report", "--results", str(tmp_path / "cv" / "results"),
              "--out", str(tmp_path / "again"), "--synthetic"])
    assert "Synthetic data" in (tmp_path / "again" / "report.html").read_text()


def test_demo_quick(monkeypatch, signal_cohort, tmp_path, capsys):
    X, y = signal_cohort
    seen = {}

    def cohort(n, seed):
        seen.update(n=n, seed=seed)
        return X.iloc[:n], y[:n]
    monkeypatch.setattr(cli, "_demo_cohort", cohort)
    cli.main(["demo", "--quick", "--n", "40", "--folds", "2", "--out", str(tmp_path), *TINY])
    out = capsys.readouterr().out
    assert all(name in out for name in ("XAttn", "Concat", "Image-only", "Metadata-only"))
    assert "SYNTHETIC" in (tmp_path / "report.html").read_text().upper()
    assert seen == {"n": 40, "seed": 0}


def test_bad_column_is_a_clear_error(cohort_csv, tmp_path):
    with pytest.raises(SystemExit, match="not in"):
        cli.main(["fit", "--csv", str(cohort_csv), "--target", "nope", "--out", str(tmp_path)])
