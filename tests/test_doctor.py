"""``bmdkit doctor`` / ``make gpu-check``: every CUDA path checked, never a pass not run."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bmdkit
from bmdkit import cli, doctor
from bmdkit.errors import BMDKitError, ParameterError

ROOT = Path(bmdkit.__file__).parent.parent


def test_make_gpu_check_runs_the_cuda_doctor():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^gpu-check:.*\n\t(.+)$", makefile, re.M)
    assert recipe and "bmdkit doctor --device cuda" in recipe.group(1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_it_says_so_and_exits_with_its_own_status():
    done = subprocess.run([sys.executable, "-m", "bmdkit.cli", "doctor", "--device", "cuda"],
                          capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == doctor.NO_DEVICE_EXIT not in (0, 1, 2)
    assert "no CUDA device" in done.stderr and "nothing was checked" in done.stderr
    assert "pass" not in done.stdout + done.stderr
    with pytest.raises(doctor.NoDeviceError):
        doctor.run_checks("cuda", only=["fit_predict"])


def test_the_checks_run_on_the_cpu_and_a_failure_is_reported(tmp_path, monkeypatch):
    names = ["fit_predict", "fused_adamw", "save_load", "explain"]
    results = doctor.run_checks("cpu", only=names, smoke=True, workdir=tmp_path)
    assert [r.name for r in results] == names
    assert all(r.status == "pass" for r in results), results
    assert doctor.exit_status(results) == 0

    def broken(run):
        raise RuntimeError("CUDA error: device-side assert triggered")
    monkeypatch.setitem(doctor.CHECKS, "compile", broken)
    failed, = doctor.run_checks("cpu", only=["compile"], smoke=True, workdir=tmp_path)
    assert failed.status == "fail" and "device-side assert" in failed.detail
    assert doctor.exit_status([*results, failed]) == doctor.FAILED_EXIT
    assert doctor.exit_status([]) == doctor.FAILED_EXIT  # nothing run is no pass
    with pytest.raises(ParameterError, match="--only: unknown checks"):
        doctor.run_checks("cpu", only=["warp_drive"])


def test_a_device_torch_does_not_know_is_named_and_nothing_runs(capsys):
    with pytest.raises(doctor.NoDeviceError, match="--device must be a torch device .* got "
                                                   "'nonsense'") as error:
        doctor.check_device("nonsense")
    assert isinstance(error.value, (BMDKitError, RuntimeError))
    with pytest.raises(SystemExit) as exit:
        cli.main(["doctor", "--device", "nonsense"])
    assert exit.value.code == doctor.NO_DEVICE_EXIT
    assert "got 'nonsense' (torch" in capsys.readouterr().err
