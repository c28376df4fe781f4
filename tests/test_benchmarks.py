"""`bmdkit bench` in smoke mode: it runs and reports every figure (timings are not asserted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bmdkit import cli
from bmdkit.benchmarks import (
    format_predict_table,
    format_table,
    make_radiograph_files,
    run_benchmarks,
    run_option_benchmarks,
    run_predict_benchmarks,
)


def test_smoke_bench_reports_every_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # keeps `bmdkit bench` in this process
    monkeypatch.setenv("BMDKIT_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--smoke", "--threads", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    progress = capsys.readouterr().err
    # the long comparisons log each step, each repeat included
    assert "[bench] radiographs: repeat 1/1" in progress
    assert "[bench] demo cohort: repeat 1/1" in progress
    assert "radiographs: naive" in progress
    for name in ("radiographs", "demo"):
        row = figures["datasets"][name]
        assert row["floor_epoch_s"] > 0 and row["fit_epoch_s"] > 0 and row["naive_epoch_s"] > 0
        assert row["predict_images_per_s"] > 0
    assert figures["overhead_ratio"] == figures["datasets"]["radiographs"]["overhead_ratio"]
    assert [p["n"] for p in figures["scaling_n"]] == [8, 16]
    # every image size is listed; the first is the n series' first point, not measured again
    assert [p["image_size"] for p in figures["scaling_image_size"]] == [16, 24]
    assert [p["n"] for p in figures["scaling_image_size"]] == [8, 8]
    assert figures["scaling_image_size"][0] == figures["scaling_n"][0]
    assert progress.count("[bench] scaling: image_size=") == 1
    assert "scaling_base_n" not in figures["settings"]
    assert figures["machine"]["torch_threads"] >= 1
    assert figures["phantoms"]["n"] == 4 and figures["phantoms"]["render_s"] > 0
    assert "[bench] phantoms: rendering 4 pelvis films at 256 px" in progress
    assert "overhead_ratio=" in format_table(figures).splitlines()[-1]
    assert "pelvis films at 256 px rendered in" in format_table(figures)


def test_radiograph_files_are_16_bit_and_distinct_paths(tmp_path):
    from PIL import Image

    paths = make_radiograph_files(10, (40, 30), tmp_path)
    assert len(set(paths)) == 10
    with Image.open(paths[9]) as image:
        assert image.size == (30, 40) and image.mode.startswith("I")
    from bmdkit.io import read_image

    dicoms = make_radiograph_files(3, (40, 30), tmp_path, file_format="dicom")
    image, info = read_image(dicoms[2], return_info=True)
    assert info.format == "DICOM" and image.shape == (40, 30)


@pytest.mark.parametrize("bench", [run_benchmarks, run_option_benchmarks,
                                   run_predict_benchmarks])
def test_unknown_mode_and_missing_cuda_are_errors(bench):
    with pytest.raises(ValueError, match="mode"):
        bench("huge")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            bench("smoke", device="cuda")


def test_bench_help_says_the_default_is_the_full_bench(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "FULL bench" in text and "tens of minutes" in text


def test_smoke_option_bench_compares_each_option_with_float32(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("BMDKIT_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "options.json"
    assert cli.main(["bench", "--options", "--smoke", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["options"]
    assert [r["option"] for r in rows] == ["float32", "freeze_backbone", "bfloat16"]
    assert rows[0]["epoch_speedup"] == 1.0 and rows[0]["max_abs_diff_vs_first"] == 0.0
    for row in rows:
        assert row["epoch_s"] > 0 and row["fit_s"] > 0 and np.isfinite(row["heldout_mae"])


def test_smoke_predict_bench_reports_floors_efficiency_and_memory(tmp_path, capsys):
    # workers=0: decoding in this process (worker processes are tested in test_inference.py)
    figures = run_predict_benchmarks("smoke", workers=0, workdir=tmp_path)
    assert set(figures["formats"]) == {"png", "dicom"}
    for row in figures["formats"].values():
        assert row["n"] == 12 and min(row["decode_floor"], row["compute_floor"]) > 0
        ratio = row["end_to_end"] / min(row["decode_floor"], row["compute_floor"])
        assert row["predict_efficiency"] == pytest.approx(ratio)
    assert [p["n"] for p in figures["memory"]] == [24, 240]
    assert figures["memory_ratio"] == pytest.approx(
        figures["memory"][1]["peak_mb"] / figures["memory"][0]["peak_mb"])
    assert "predict_efficiency=" in format_predict_table(figures).splitlines()[-1]
    # every row predicted (else RuntimeError), as the progress bar of bmdkit predict shows
    assert "240/240" in capsys.readouterr().err


def test_the_bench_silences_only_the_imputation_it_causes_on_purpose():
    import warnings

    from bmdkit.benchmarks.measure import imputation_expected
    from bmdkit.checks import ImputationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imputation_expected():
            warnings.warn("imputed 3 missing metadata values", ImputationWarning, stacklevel=1)
            with pytest.raises(UserWarning, match="other"):
                warnings.warn("other", UserWarning, stacklevel=1)
