"""Several machines: two ``bmdkit tune`` workers on a real PostgreSQL study on loopback."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from system_packages import ensure_debian_package
from tuning_workers import run_two_workers_sharing_a_study

pytest.importorskip("psycopg", reason="psycopg[binary] is in the test extra")


def _server_binaries():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        ensure_debian_package("postgresql", provides="pg_ctlcluster")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.skip("postgresql is installed but no /usr/lib/postgresql/*/bin/postgres")
    return Path(found[-1]).parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1, run as a non-root user, stopped after."""
    bin_dir = _server_binaries()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="bmdkit-pg-"))
    if as_user:
        shutil.chown(data, "postgres")
    port = _free_port()

    def pg(*args):
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    init = pg(str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "bmdkit")
    assert init.returncode == 0, init.stderr
    start = pg(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"),
               "-w", "-t", "60", "-o",
               f"-p {port} -c listen_addresses=127.0.0.1 -k {data}", "start")
    assert start.returncode == 0, start.stderr + (data / "log").read_text()
    try:
        yield f"postgresql://bmdkit@127.0.0.1:{port}/postgres"
    finally:
        pg(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tmp_path, postgres_url):
    # both start against an empty database: the schema and the study are created once
    run_two_workers_sharing_a_study(tmp_path, postgres_url, "pg")
