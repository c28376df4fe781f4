"""What ``import bmdkit`` does to the process: OMP_WAIT_POLICY, and nothing heavy loaded.

Each test runs a fresh interpreter: this process imported torch long ago.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import bmdkit

ROOT = Path(bmdkit.__file__).resolve().parents[1]  # this checkout's bmdkit first on sys.path


def _python(code, **env):
    """stdout and stderr of ``python -c code`` with OMP_WAIT_POLICY unset unless in ``env``."""
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True,
                         text=True, check=True, cwd=ROOT, env={**environ, **env})
    return out.stdout, out.stderr


def test_import_sets_passive_openmp_before_torch_without_a_warning():
    out, err = _python("import os, sys, bmdkit.clinical\n"
                       "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules, "
                       "bmdkit.__version__ == bmdkit.__dict__['__version__'])")
    assert out.split() == ["PASSIVE", "False", "True"] and "Warning" not in err


def test_the_users_setting_is_kept():
    out, err = _python("import os, torch, bmdkit; print(os.environ['OMP_WAIT_POLICY'])",
                       OMP_WAIT_POLICY="ACTIVE")
    assert out.strip() == "ACTIVE" and "Warning" not in err


def test_torch_imported_first_is_a_runtime_warning_naming_the_variable():
    out, err = _python("import torch\nimport bmdkit\nprint('imported')")
    assert out.strip() == "imported"
    # attributed to the importing line, not to bmdkit's internals
    assert "<string>:2: RuntimeWarning: bmdkit sets OMP_WAIT_POLICY=PASSIVE" in err
    assert "cannot take effect" in err and "import bmdkit before torch" in err


def test_tuning_without_the_tune_extra_names_the_extra(monkeypatch, capsys):
    from bmdkit import cli
    from bmdkit.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna fails, as when not installed
    monkeypatch.delitem(sys.modules, "bmdkit.tuning", raising=False)
    message = 'bmdkit.tuning needs optuna, which is not installed: pip install "bmdkit[tune]"'
    with pytest.raises(MissingExtraError) as error:
        import bmdkit.tuning  # noqa: F401
    assert str(error.value) == message and error.value.extra == "tune"
    with pytest.raises(SystemExit) as exit:
        cli.main(["tune", "--demo"])
    assert exit.value.code == 2 and capsys.readouterr().err == f"bmdkit tune: error: {message}\n"
