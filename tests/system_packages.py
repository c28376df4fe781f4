"""Install Debian packages that some tests need (chromium, postgresql, orthanc, dicom3tools)
on a fresh machine.

CI machines start bare, so tests that need a real browser or database install
it on first use. Parallel test workers serialise on a file lock; where
installing is impossible (not root, no apt-get) the test is skipped with the
reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock

_LOCK = Path(tempfile.gettempdir()) / "bmdkit-apt.lock"


def ensure_debian_package(package, *, provides):
    """Path of ``provides`` (a command name or absolute path), installing ``package`` if needed."""

    def find():
        if os.path.isabs(provides):
            return provides if os.path.exists(provides) else None
        return shutil.which(provides)

    with FileLock(str(_LOCK), timeout=900):
        found = find()
        if found:
            return found
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.skip(f"{package} is not installed and cannot be installed here (needs root and apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]):
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if result.returncode != 0:
                pytest.skip(f"could not install {package}: {result.stderr.strip()[-500:]}")
        found = find()
        if not found:
            pytest.skip(f"{package} installed but {provides} not found")
        return found
