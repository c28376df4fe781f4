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
from dicom_cohort import dciodvfy_errors, non_image_object, tiny_model_and_dicoms
from orthanc import Node, Orthanc, free_port
from system_packages import ensure_debian_package
from test_dicomnode import report_values

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


def test_orthanc_gets_one_valid_report_per_image_even_across_a_crash(pacs, tmp_path):
    """Orthanc sends 8 radiographs and a non-image object to the node.

    The first node cannot reach the PACS's port: it queues (and acknowledges)
    4 images, and is killed (SIGKILL) with them in its queue. The second node
    answers them, refuses the non-image object with a failure status, answers
    the 4 images sent after it, and exits on SIGTERM. Orthanc then holds one
    report per image, each valid for dciodvfy, in the image's study,
    referencing it and carrying the BMD ``bmdkit predict`` gives on the file.
    """
    orthanc, port, model, dicoms, root = pacs
    files = sorted(dicoms.glob("*.dcm"))
    uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files]
    ids = [orthanc.upload(path) for path in files]
    bad = orthanc.upload(non_image_object(files[0], tmp_path / "note.dcm"))
    queue, log = tmp_path / "queue", tmp_path / "serve.log"
    first = Node(model, queue, log, port=port, extra=["--workers", "1"],
                 forward=f"127.0.0.1:{free_port()}:{orthanc.aet}")  # nothing listens there
    for instance in ids[:4]:
        orthanc.send_to_node(instance)  # acknowledged once on disk
    first.wait_for("stay in the queue")
    first.stop(signal.SIGKILL)
    assert len(list((queue / "incoming").glob("*.dcm"))) == 4
    second = Node(model, queue, log, port=port, extra=["--workers", "1"],
                  forward=f"127.0.0.1:{orthanc.dicom}:{orthanc.aet}")
    try:
        with pytest.raises(urllib.error.HTTPError):
            orthanc.send_to_node(bad)  # the node answers 0xC000: Orthanc's store fails
        for instance in ids[4:]:
            orthanc.send_to_node(instance)  # ... and the node still answers the next ones
        found = wait_for_reports(orthanc, uids)
    finally:
        assert second.stop() == 0  # SIGTERM: answers the queue and exits cleanly
    assert list((queue / "incoming").glob("*.dcm")) == []
    text = log.read_text()
    assert "refused" in text and "not a CR/DX image" in text
    assert text.count("image(s) answered") == 8  # a progress line per study
    cli.main(["predict", "--dicom-dir", str(dicoms), "--model", str(model), "--out",
              str(tmp_path / "predict.csv"), "--workers", "0"])
    expected = pd.read_csv(tmp_path / "predict.csv").set_index("image_path")["predicted_bmd"]
    for path, uid in zip(files, uids):
        report, = found[uid]  # exactly one report per image
        assert report.StudyInstanceUID == pydicom.dcmread(path).StudyInstanceUID
        bmd = report_values(report)[0]["Femur DXA Bone density"]
        # the network computes in float32: batches of other sizes change the last bits
        assert bmd == pytest.approx(expected[path.name], abs=1e-6)
    for instance in orthanc.instances("SR"):
        (tmp_path / "report.dcm").write_bytes(orthanc.file(instance))
        assert dciodvfy_errors(tmp_path / "report.dcm") == []
