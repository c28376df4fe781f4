"""A real PACS for tests: Orthanc (the Debian package) on loopback, driven by its REST API.

:class:`Orthanc` writes a JSON configuration into a temporary folder (free
ports, storage there, one declared modality: the bmdkit node), starts the
server and waits until its REST API answers; :func:`free_port` finds ports;
:class:`Node` runs ``bmdkit serve`` as a process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """Orthanc on 127.0.0.1 with storage in ``folder``; the node ``node_port`` is modality "bmdkit"."""

    def __init__(self, executable, folder, *, node_port, node_aet="BMDKIT"):
        self.folder = Path(folder)
        self.http, self.dicom, self.aet = free_port(), free_port(), "ORTHANC"
        config = {
            "Name": "bmdkit-test", "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"), "HttpPort": self.http,
            "DicomPort": self.dicom, "DicomAet": self.aet, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "Plugins": [], "DicomAlwaysAllowStore": True,
            "DicomModalities": {"bmdkit": [node_aet, "127.0.0.1", node_port]},
            "DicomScuTimeout": 30, "StableAge": 1,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
        self.log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([executable, str(self.folder / "orthanc.json")],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("/system")
                break
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Orthanc did not start: "
                                       + (self.folder / "orthanc.log").read_text()[-2000:]) from None
                time.sleep(0.2)

    def request(self, path, data=None, method=None):
        """Raw bytes of a REST call (``data``: bytes, or an object sent as JSON)."""
        if data is not None and not isinstance(data, bytes):
            data = json.dumps(data).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", data=data,
                                         method=method)
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.read()

    def get(self, path):
        return json.loads(self.request(path))

    def upload(self, path):
        """Store the DICOM file ``path``; its Orthanc ID."""
        return json.loads(self.request("/instances", Path(path).read_bytes()))["ID"]

    def send_to_node(self, instance):
        """C-STORE the instance to the node (REST /modalities/bmdkit/store); raises
        urllib.error.HTTPError when the node answers with a failure status."""
        return json.loads(self.request("/modalities/bmdkit/store",
                                        {"Resources": [instance], "Synchronous": True}))

    def instances(self, modality):
        """Orthanc IDs of the stored instances of ``modality``."""
        return json.loads(self.request("/tools/find", {"Level": "Instance",
                                                       "Query": {"Modality": modality}}))

    def file(self, instance):
        return self.request(f"/instances/{instance}/file")

    def stop(self):
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


class Node:
    """``bmdkit serve`` in its own process, logging to ``log``; started when made."""

    def __init__(self, model, queue, log, *, port, forward, extra=()):
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        self.log_path = Path(log)
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bmdkit.cli", "serve", "--model", str(model), "--port",
             str(port), "--host", "127.0.0.1", "--ae-title", "BMDKIT", "--forward", forward,
             "--queue", str(queue), *extra], stdout=self.log, stderr=subprocess.STDOUT,
            env=env, cwd=ROOT)
        self.wait_for("listening as BMDKIT", timeout=120)

    def text(self):
        """What this node logged (the log file may hold earlier nodes' lines before)."""
        with open(self.log_path, "rb") as log:
            log.seek(self.offset)
            return log.read().decode("utf-8", "replace")

    def wait_for(self, text, *, timeout=60, count=1):
        deadline = time.monotonic() + timeout
        while self.text().count(text) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bmdkit serve never logged {text!r}: "
                                   + self.text()[-3000:])
            time.sleep(0.1)

    def stop(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)
        code = self.process.wait(120)
        self.log.close()
        return code
