"""bmdkit serve beside a real PACS: Orthanc sends SYNTHETIC hip radiographs, the reports come back.

Orthanc and dicom3tools are Debian packages, installed on first use (as
PostgreSQL is for the scale-out tests); Orthanc runs on loopback with its own
configuration and storage in a temporary folder, and sends images to the
node through its REST API (C-STORE to a declared modality).
"""

from __future__ import annotations

import signal
import time
import urllib.error

import pandas as pd
import pydicom
import pytest
from dicom_cohort import non_image_object, tiny_model_and_dicoms
from orthanc import Node, Orthanc, free_port
from system_packages import ensure_debian_package
from test_dicomnode import dciodvfy_errors, report_values

from bmdkit import cli

pytest.importorskip("pynetdicom")


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """(Orthanc, node port, model folder, DICOM folder, work folder)."""
    executable = ensure_debian_package("orthanc", provides="/usr/sbin/Orthanc")
    root = tmp_path_factory.mktemp("pacs")
    model, dicoms = tiny_model_and_dicoms(root, n_dicoms=8)
    port = free_port()
    orthanc = Orthanc(executable, root / "orthanc", node_port=port)
    yield orthanc, port, model, dicoms, root
    orthanc.stop()


def reports_by_source(orthanc):
    """{source SOP Instance UID: [report datasets]} of the SRs stored in Orthanc."""
    found = {}
    for instance in orthanc.instances("SR"):
        report = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.file(instance)))
        for uid in report_values(report)[1]:
            found.setdefault(uid, []).append(report)
    return found


def wait_for_reports(orthanc, uids, timeout=60):
    deadline = time.monotonic() + timeout
    while not set(uids) <= set(found := reports_by_source(orthanc)):
        assert time.monotonic() < deadline, f"reports of {set(uids) - set(found)} never came"
        time.sleep(0.3)
    return found


def test_orthanc_gets_a_valid_report_per_image_and_a_refusal_for_a_non_image(pacs, tmp_path):
    orthanc, port, model, dicoms, root = pacs
    files = sorted(dicoms.glob("*.dcm"))[:4]
    node = Node(model, tmp_path / "queue", tmp_path / "serve.log", port=port,
                forward=f"127.0.0.1:{orthanc.dicom}:{orthanc.aet}")
    try:
        ids = [orthanc.upload(path) for path in files]
        bad = orthanc.upload(non_image_object(files[0], tmp_path / "note.dcm"))
        orthanc.send_to_node(ids[0])
        with pytest.raises(urllib.error.HTTPError):
            orthanc.send_to_node(bad)  # the node answers 0xC000: Orthanc's store fails
        for instance in ids[1:]:
            orthanc.send_to_node(instance)  # ... and the node still answers the next ones
        uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files]
        found = wait_for_reports(orthanc, uids)
    finally:
        assert node.stop() == 0  # SIGTERM: drains and exits cleanly
    log = (tmp_path / "serve.log").read_text()
    assert "refused" in log and "not a CR/DX image" in log
    assert log.count("image(s) answered") == 4  # a progress line per study
    cli.main(["predict", "--dicom-dir", str(dicoms), "--model", str(model), "--out",
              str(tmp_path / "predict.csv"), "--workers", "0"])
    expected = pd.read_csv(tmp_path / "predict.csv").set_index("image_path")["predicted_bmd"]
    for path, uid in zip(files, uids):
        report, = found[uid]
        assert report.StudyInstanceUID == pydicom.dcmread(path).StudyInstanceUID
        bmd = report_values(report)[0]["Femur DXA Bone density"]
        # the network computes in float32: batches of other sizes change the last bits
        assert bmd == pytest.approx(expected[path.name], abs=1e-6)
        raw = tmp_path / f"{uid}.sr.dcm"
        raw.write_bytes(orthanc.file(next(i for i in orthanc.instances("SR")
                                          if orthanc.get(f"/instances/{i}/simplified-tags")
                                          ["SOPInstanceUID"] == report.SOPInstanceUID)))
        assert dciodvfy_errors(raw) == []


def test_a_node_killed_mid_queue_answers_every_image_exactly_once(pacs, tmp_path):
    orthanc, port, model, dicoms, root = pacs
    files = sorted(dicoms.glob("*.dcm"))[4:]
    uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files]
    queue = tmp_path / "queue"
    # the PACS's own port is down for the first node: images are queued, reports not sent
    first = Node(model, queue, tmp_path / "serve.log", port=port,
                 forward=f"127.0.0.1:{free_port()}:{orthanc.aet}")
    for path in files:
        orthanc.send_to_node(orthanc.upload(path))  # acknowledged: on disk
    first.wait_for("stay in the queue")
    first.stop(signal.SIGKILL)
    assert len(list((queue / "incoming").glob("*.dcm"))) == len(files)
    second = Node(model, queue, tmp_path / "serve.log", port=port,
                  forward=f"127.0.0.1:{orthanc.dicom}:{orthanc.aet}")
    try:
        found = wait_for_reports(orthanc, uids)
        second.wait_for("waiting", count=1)
    finally:
        second.stop()
    assert all(len(found[uid]) == 1 for uid in uids)
    assert list((queue / "incoming").glob("*.dcm")) == []
