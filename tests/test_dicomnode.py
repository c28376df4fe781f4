"""Structured Reports, FHIR Observations and the DICOM node, on SYNTHETIC CR DICOM phantoms.

The PACS round trip (Orthanc) is in test_pacs.py; these tests use the public
commands and pynetdicom directly, with a tiny conformal model fitted once.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_cohort import dciodvfy_errors, tiny_model_and_dicoms
from pydicom.uid import generate_uid

from bmdkit import cli

pytest.importorskip("highdicom")
pytest.importorskip("pynetdicom")
pytest.importorskip("fhir.resources")


@pytest.fixture(scope="module")
def node_setup(tmp_path_factory):
    """(model folder, folder of 6 CR DICOMs): a split-conformal Concat model on 32 px phantoms."""
    return tiny_model_and_dicoms(tmp_path_factory.mktemp("dicomnode"))


def report_values(report):
    """{concept meaning: value} of the NUM and CODE items of a report's measurement groups,
    and the SOP Instance UIDs its IMAGE items reference."""
    values, images = {}, set()

    def walk(items):
        for item in items:
            meaning = item.ConceptNameCodeSequence[0].CodeMeaning
            if item.ValueType == "NUM":
                values[meaning] = float(item.MeasuredValueSequence[0].NumericValue)
            elif item.ValueType == "CODE":
                values.setdefault(meaning, item.ConceptCodeSequence[0].CodeMeaning)
            elif item.ValueType == "TEXT":
                values.setdefault(meaning, item.TextValue)
            elif item.ValueType == "IMAGE":
                images.add(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            walk(item.get("ContentSequence", []))

    walk(report.ContentSequence)
    return values, images


def test_predict_writes_a_valid_report_observation_and_overlay_per_image(node_setup, tmp_path):
    model, dicoms = node_setup
    cli.main(["predict", "--dicom-dir", str(dicoms), "--model", str(model), "--out",
              str(tmp_path / "out.csv"), "--workers", "0", "--sr-dir", str(tmp_path / "sr"),
              "--fhir-dir", str(tmp_path / "fhir"), "--overlay"])
    table = pd.read_csv(tmp_path / "out.csv")
    assert len(table) == 6
    for row in table.itertuples():
        source = pydicom.dcmread(dicoms / row.image_path, stop_before_pixels=True)
        uid = source.SOPInstanceUID
        report = pydicom.dcmread(tmp_path / "sr" / f"{uid}.sr.dcm")
        assert (report.PatientID, report.StudyInstanceUID) == (source.PatientID,
                                                                source.StudyInstanceUID)
        evidence = report.CurrentRequestedProcedureEvidenceSequence[0]
        assert evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
            .ReferencedSOPInstanceUID == uid
        values, images = report_values(report)
        assert images == {uid}  # the content tree references the source image
        assert values["Femur DXA Bone density"] == pytest.approx(row.predicted_bmd, abs=1e-9)
        assert values["Lower bound, 90% prediction interval, BMD"] == pytest.approx(
            row.bmd_lower, abs=1e-9)
        assert values["DXA Femur [T-score] Bone density"] == pytest.approx(row.t_score,
                                                                           abs=1e-9)
        assert values["WHO category of estimated T-score"].lower() == row.who_category
        assert values["Referral to DXA: interval contains a screening threshold"] == \
            ("Yes" if row.refer else "No")
        assert "NOT A MEDICAL DEVICE" in values["Research use statement"]
        assert "ConcatBMDRegressor" in values["Algorithm Name"]
        observation = pd.read_json(tmp_path / "fhir" / f"{uid}.observation.json",
                                   typ="series")
        assert observation["code"]["coding"][0]["system"] == "http://loinc.org"
        assert observation["valueQuantity"]["value"] == pytest.approx(row.predicted_bmd)
        assert observation["referenceRange"][0]["high"]["value"] == pytest.approx(
            row.bmd_upper)
        assert any("radiograph" in note["text"] for note in observation["note"])
        capture = pydicom.dcmread(tmp_path / "sr" / f"{uid}.sc.dcm")
        assert capture.pixel_array.shape[-1] == 3 and capture.PatientID == source.PatientID
    first = next((tmp_path / "sr").glob("*.sr.dcm"))
    assert dciodvfy_errors(first) == []
    assert dciodvfy_errors(next((tmp_path / "sr").glob("*.sc.dcm"))) == []


def test_several_sites_give_one_measurement_group_each_and_stable_uids(node_setup):
    from bmdkit.dicomnode.card import ModelCard
    from bmdkit.dicomnode.sr import build_report

    model, dicoms = node_setup
    source = pydicom.dcmread(next(dicoms.glob("*.dcm")), stop_before_pixels=True)
    card = ModelCard.from_folder(model)
    result = {"femoral_neck/predicted_bmd": 0.71, "femoral_neck/t_score": -2.3,
              "femoral_neck/who_category": "osteopenia", "lumbar_spine/predicted_bmd": 0.95,
              "lumbar_spine/t_score": -1.9, "lumbar_spine/who_category": "osteopenia"}
    report = build_report(source, result, card, sites=["femoral_neck", "lumbar_spine"],
                          imputed=["weight_kg"])
    measurements = report.ContentSequence[-2]  # Imaging Measurements, then the statements
    groups = [item for item in measurements.ContentSequence if item.ValueType == "CONTAINER"]
    assert len(groups) == 2
    values, _ = report_values(report)
    assert values["DXA Lumbar spine [Mass/Area] Bone density"] == pytest.approx(0.95)
    assert "weight_kg" in values["Imputed metadata fields"]
    again = build_report(source, result, card, sites=["femoral_neck", "lumbar_spine"])
    assert again.SOPInstanceUID == report.SOPInstanceUID  # a resent report replaces itself


def test_sr_dir_without_the_extra_names_it(node_setup, tmp_path, monkeypatch, capsys):
    model, dicoms = node_setup
    monkeypatch.setitem(sys.modules, "pynetdicom", None)  # as when not installed
    with pytest.raises(SystemExit) as exit:
        cli.main(["predict", "--dicom-dir", str(dicoms), "--model", str(model), "--out",
                  str(tmp_path / "out.csv"), "--sr-dir", str(tmp_path / "sr")])
    assert exit.value.code == 2
    assert 'pip install "bmdkit[dicom-node]"' in capsys.readouterr().err


@pytest.mark.parametrize(("options", "message"), [
    ([], "give --forward and/or --sr-dir"),
    (["--sr-dir", "sr", "--ae-title", "A" * 17], "--ae-title must have 1 to 16 characters"),
    (["--sr-dir", "sr", "--port", "70000"], "--port must be 0 to 65535, got 70000"),
    (["--sr-dir", "sr", "--batch-size", "0"], "--batch-size must be 1 or more, got 0"),
    (["--forward", "pacs:104"], "--forward must be HOST:PORT:AET"),
    (["--sr-dir", "sr", "--workers", "-1"], "--workers must be 0 or more, got -1"),
    (["--sr-dir", "sr", "--metadata", "absent.csv"], "--metadata absent.csv not found"),
    (["--sr-dir", "sr", "--metadata", "keyless.csv"],
     "--metadata keyless.csv needs a PatientID or AccessionNumber column"),
    (["--sr-dir", "sr", "--metadata", "fieldless.csv"],
     "--metadata fieldless.csv has none of the model's columns"),
])
def test_serve_names_a_bad_option_without_a_traceback(node_setup, tmp_path, monkeypatch, capsys,
                                                      options, message):
    model, _ = node_setup
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"age_at_xray": [70.0]}).to_csv("keyless.csv", index=False)
    pd.DataFrame({"PatientID": ["P1"], "shoe_size": [42]}).to_csv("fieldless.csv", index=False)
    with pytest.raises(SystemExit) as exit:
        cli.main(["serve", "--model", str(model), "--queue", "queue", *options])
    assert exit.value.code == 2
    assert f"bmdkit serve: error: {message}" in capsys.readouterr().err


def test_serve_names_a_model_folder_that_is_not_there(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["serve", "--model", str(tmp_path / "absent"), "--sr-dir", str(tmp_path / "sr"),
                  "--queue", str(tmp_path / "queue")])
    assert exit.value.code == 2 and str(tmp_path / "absent") in capsys.readouterr().err


def _store(port, datasets):
    """C-STORE ``datasets`` to the node on ``port``; their statuses."""
    from pynetdicom import AE, StoragePresentationContexts

    ae = AE(ae_title="MODALITY")
    ae.requested_contexts = StoragePresentationContexts[:120]
    assoc = ae.associate("127.0.0.1", port, ae_title="BMDKIT")
    assert assoc.is_established
    try:
        return [assoc.send_c_store(ds) for ds in datasets]
    finally:
        assoc.release()


def test_node_refuses_what_it_cannot_use_imputes_and_names_missing_fields(node_setup,
                                                                          tmp_path, caplog):
    from bmdkit.dicomnode.node import DicomNode

    model, dicoms = node_setup
    files = sorted(dicoms.glob("*.dcm"))
    text_sr = pydicom.dcmread(files[0])
    text_sr.SOPClassUID, text_sr.Modality = "1.2.840.10008.5.1.4.1.1.88.11", "SR"
    text_sr.SOPInstanceUID = generate_uid()
    del text_sr.PixelData
    no_pixels = pydicom.dcmread(files[4])
    no_pixels.SOPInstanceUID = generate_uid()
    del no_pixels.PixelData
    anonymised, refused = pydicom.dcmread(files[1]), pydicom.dcmread(files[2])
    for ds in (anonymised, refused):
        ds.SOPInstanceUID = generate_uid()
        del ds.PatientWeight, ds.PatientAge
    refused.AccessionNumber = "NOT-IN-TABLE"
    anonymised.AccessionNumber = "ACC-1"
    pd.DataFrame({"AccessionNumber": ["ACC-1"], "age_at_xray": [77.0]}).to_csv(
        tmp_path / "meta.csv", index=False)
    node = DicomNode(model, queue_dir=tmp_path / "queue", port=0, sr_dir=tmp_path / "sr",
                     metadata=tmp_path / "meta.csv", workers=0).start()  # all in-thread
    try:
        statuses = _store(node.port, [text_sr, pydicom.dcmread(files[3]), no_pixels,
                                      anonymised])
    finally:
        node.stop()
    assert [s.Status for s in statuses] == [0xC000, 0x0000, 0xC000, 0x0000]
    assert "not a CR/DX image" in statuses[0].ErrorComment
    assert statuses[2].ErrorComment == "no pixel data"
    assert "not a CR/DX image" in caplog.text
    values, _ = report_values(pydicom.dcmread(tmp_path / "sr"
                                              / f"{anonymised.SOPInstanceUID}.sr.dcm"))
    assert values["Imputed metadata fields"].endswith("weight_kg")  # age came from the table
    assert "header lacks weight_kg; imputed" in caplog.text
    assert list((tmp_path / "queue" / "incoming").iterdir()) == []
    strict = DicomNode(model, queue_dir=tmp_path / "queue2", port=0, sr_dir=tmp_path / "sr2",
                       require_metadata=True, workers=0).start()
    try:
        status, = _store(strict.port, [refused])
    finally:
        strict.stop()
    assert status.Status == 0xC000 and "age_at_xray" in status.ErrorComment
    assert not (tmp_path / "sr2").exists() or not list((tmp_path / "sr2").iterdir())


def test_node_answers_the_queue_left_by_a_previous_run(node_setup, tmp_path):
    from bmdkit.dicomnode.node import DicomNode

    model, dicoms = node_setup
    queue = tmp_path / "queue" / "incoming"
    queue.mkdir(parents=True)
    files = sorted(dicoms.glob("*.dcm"))[:3]
    for path in files:  # what a killed node leaves: objects acknowledged, not yet answered
        shutil.copy(path, queue / f"{pydicom.dcmread(path).SOPInstanceUID}.dcm")
    node = DicomNode(model, queue_dir=tmp_path / "queue", port=0, sr_dir=tmp_path / "sr",
                     workers=1)  # decoding and reports in a worker process
    node.start()
    node.stop()
    assert node.n_answered == 3 and list(queue.iterdir()) == []
    answered = {p.name.removesuffix(".sr.dcm") for p in (tmp_path / "sr").iterdir()}
    assert answered == {pydicom.dcmread(p).SOPInstanceUID for p in files}
    assert np.isfinite([report_values(pydicom.dcmread(p))[0]["Femur DXA Bone density"]
                        for p in (tmp_path / "sr").iterdir()]).all()


def test_sr_dir_with_a_csv_of_non_dicom_images_names_the_first(node_setup, tmp_path, capsys):
    model, dicoms = node_setup
    png = next((dicoms.parent / "png").rglob("*.png"))
    pd.DataFrame({"image_path": [str(next(dicoms.glob("*.dcm"))), str(png)],
                  "age_at_xray": [75.0, 76.0], "sex": ["F", "M"], "height_cm": [160.0, 170.0],
                  "weight_kg": [60.0, 70.0]}).to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(SystemExit) as exit:
        cli.main(["predict", "--csv", str(tmp_path / "rows.csv"), "--model", str(model),
                  "--out", str(tmp_path / "out.csv"), "--sr-dir", str(tmp_path / "sr")])
    assert exit.value.code == 2
    assert f"need DICOM images; 1 are not:\n  {png}: not a DICOM file" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_node_serves_several_associations_at_once(node_setup, tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import ComputedRadiographyImageStorage

    from bmdkit.dicomnode.node import DicomNode

    model, dicoms = node_setup
    files = sorted(dicoms.glob("*.dcm"))[:4]
    node = DicomNode(model, queue_dir=tmp_path / "queue", port=0, sr_dir=tmp_path / "sr",
                     workers=0).start()
    try:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(ComputedRadiographyImageStorage)
        both = [ae.associate("127.0.0.1", node.port, ae_title="BMDKIT") for _ in range(2)]
        assert all(assoc.is_established for assoc in both)  # open side by side
        statuses = [both[k % 2].send_c_store(pydicom.dcmread(path))
                    for k, path in enumerate(files)]
        for assoc in both:
            assoc.release()
    finally:
        node.stop()
    assert [s.Status for s in statuses] == [0] * 4
    assert len(list((tmp_path / "sr").glob("*.sr.dcm"))) == 4


def test_a_taken_port_names_host_and_port_and_stops_the_workers(node_setup, tmp_path):
    import multiprocessing
    import socket

    from bmdkit.dicomnode.node import DicomNode
    from bmdkit.errors import ParameterError

    model, _ = node_setup
    before = set(multiprocessing.active_children())  # other tests' workers (e.g. loky) may live on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = DicomNode(model, queue_dir=tmp_path / "queue", host="127.0.0.1", port=port,
                         sr_dir=tmp_path / "sr", workers=1)
        with pytest.raises(ParameterError, match=f"--host 127.0.0.1 --port {port}"):
            node.start()
    assert node._pool is None and set(multiprocessing.active_children()) <= before
