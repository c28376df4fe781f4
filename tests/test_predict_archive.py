"""`bmdkit predict` at archive scale: streaming output, kill and --resume, side file, DICOM folders."""

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from settings import TINY_SEVERAL_BATCHES

from bmdkit import BMDRegressor, cli
from bmdkit.io.results import append_rows, read_rows

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved_model(signal_cohort, tmp_path_factory):
    X, y = signal_cohort
    path = tmp_path_factory.mktemp("model") / "concat"
    BMDRegressor(fusion="concat", **TINY_SEVERAL_BATCHES).fit(X.iloc[:40], y[:40]).save(path)
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """48 rows over radiograph-like 16-bit PNGs (4 rendered, the rest byte copies), big
    enough (768 x 640) that decoding takes a few seconds: time to kill the run."""
    folder = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(0)
    encoded = []
    for i in range(4):
        image = rng.normal(20000 + 3000 * i, 4000, (768, 640)).clip(0, 65535).astype(np.uint16)
        Image.fromarray(image).save(folder / "distinct.png")
        encoded.append((folder / "distinct.png").read_bytes())
    rows = []
    for i in range(48):
        (folder / "images" / f"{i // 16}").mkdir(parents=True, exist_ok=True)
        name = f"images/{i // 16}/x{i:03d}.png"
        (folder / name).write_bytes(encoded[i % 4])
        rows.append({"image_path": name, "age": 70 + i % 11, "sex": "FM"[i % 2],
                     "subject": f"s{i:03d}"})
    pd.DataFrame(rows).to_csv(folder / "archive.csv", index=False)
    return folder / "archive.csv"


def _predict(*args):
    cli.main(["predict", *map(str, args)])


def test_resume_after_sigkill_gives_every_row_once_with_the_same_predictions(
        saved_model, archive, tmp_path):
    common = ["--csv", archive, "--model", saved_model, "--chunk-size", "8"]
    _predict(*common, "--out", tmp_path / "whole.csv", "--workers", "0")
    whole = pd.read_csv(tmp_path / "whole.csv")
    assert whole["row"].tolist() == list(range(48))

    out = tmp_path / "killed.csv"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.Popen(
        [sys.executable, "-m", "bmdkit.cli", "predict", *map(str, common), "--out", str(out),
         "--workers", "1"], env=env, cwd=tmp_path, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600  # a loaded CI machine imports torch slowly
        while not (out.exists() and out.read_text().count("\n") > 8):
            assert run.poll() is None, "bmdkit predict ended before any chunk was written"
            assert time.monotonic() < deadline, "no chunk written in 600 s"
            time.sleep(0.02)
        run.send_signal(signal.SIGKILL)
        run.wait()
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)  # the decoding worker, if it outlived its parent
        except ProcessLookupError:
            pass
    written = out.read_text().count("\n") - 1
    assert 8 <= written < 48, f"the kill came too late ({written} rows written)"
    with open(out, "a") as f:  # what a write cut short leaves: a torn last line
        f.write("47,images/2/x047.png,80,M,s047,0.9")

    _predict(*common, "--out", out, "--workers", "1", "--resume")
    resumed = pd.read_csv(out)
    assert sorted(resumed["row"]) == list(range(48))  # every row, exactly once
    resumed = resumed.sort_values("row").reset_index(drop=True)
    pd.testing.assert_frame_equal(resumed, whole)  # same predictions, bit for bit
    assert not (tmp_path / "killed.errors.csv").exists()


def test_unreadable_files_go_to_the_side_file_and_the_rest_is_predicted(
        saved_model, archive, tmp_path, capsys):
    table = pd.read_csv(archive).iloc[:20]
    table["image_path"] = [str(archive.parent / p) for p in table["image_path"]]
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    table.loc[5, "image_path"] = str(tmp_path / "corrupt.png")
    table.loc[12, "image_path"] = str(tmp_path / "gone.png")
    table.to_csv(tmp_path / "rows.csv", index=False)
    _predict("--csv", tmp_path / "rows.csv", "--model", saved_model, "--key", "subject",
             "--out", tmp_path / "pred.parquet", "--workers", "1", "--chunk-size", "8")
    assert "18 predictions" in capsys.readouterr().out
    pred = pd.read_parquet(tmp_path / "pred.parquet")
    assert sorted(pred["subject"]) == sorted(set(table["subject"]) - {"s005", "s012"})
    assert list(pred.columns) == [*table.columns, "predicted_bmd", "t_score", "who_category"]
    errors = pd.read_csv(tmp_path / "pred.errors.csv")
    assert errors["subject"].tolist() == ["s005", "s012"]
    assert errors["error"][0].split(":")[0] in {"OSError", "UnidentifiedImageError"}
    assert errors["error"][1].startswith("FileNotFoundError")


def _write_dicom(path, pixels, **tags):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for name, value in tags.items():
        setattr(ds, name, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_folder_with_metadata_from_headers_and_a_csv(signal_cohort, tmp_path):
    X, y = signal_cohort
    X = X.rename(columns={"age": "age_at_xray"})  # the name DICOM headers fill
    model = BMDRegressor(fusion="concat", **TINY_SEVERAL_BATCHES).fit(X.iloc[:40], y[:40])
    model.save(tmp_path / "model")
    rng = np.random.default_rng(1)
    root = tmp_path / "dicoms"
    for i in range(6):
        tags = {"PatientAge": f"0{72 + i}Y", "PatientSex": "FM"[i % 2]}
        if i == 4:
            del tags["PatientSex"]
        _write_dicom(root / f"study{i % 2}" / f"IM{i}.dcm",
                     rng.integers(0, 4000, (48, 40)), **tags)
    (root / "notes.txt").write_text("not an image")  # ignored: a suffix that is not DICOM
    (root / "study0" / "DICOMDIR").write_text("not DICOM either")  # no suffix: tried, reported
    _predict("--dicom-dir", root, "--model", tmp_path / "model", "--out", tmp_path / "a.csv",
             "--workers", "0")
    pred = pd.read_csv(tmp_path / "a.csv")
    assert set(pred["image_path"]) == {f"study{i % 2}/IM{i}.dcm" for i in range(6)} - {
        "study0/IM4.dcm"}
    assert pred.loc[pred["image_path"] == "study1/IM3.dcm", "age_at_xray"].item() == 75.0
    errors = pd.read_csv(tmp_path / "a.errors.csv").set_index("image_path")["error"]
    assert set(errors.index) == {"study0/IM4.dcm", "study0/DICOMDIR"}
    assert "PatientSex" in errors["study0/IM4.dcm"]
    # metadata from a CSV keyed by the relative path win over headers; unmatched files reported
    meta = pd.DataFrame({"path": ["study0/IM0.dcm", "study1/IM1.dcm"],
                         "age_at_xray": [90.0, 60.0], "sex": ["F", "F"]})
    meta.to_csv(tmp_path / "meta.csv", index=False)
    _predict("--dicom-dir", root, "--metadata", tmp_path / "meta.csv", "--key", "path",
             "--model", tmp_path / "model", "--out", tmp_path / "b.csv", "--workers", "0")
    pred = pd.read_csv(tmp_path / "b.csv").set_index("image_path")
    assert pred["age_at_xray"].to_dict() == {"study0/IM0.dcm": 90.0, "study1/IM1.dcm": 60.0}
    expected = model.predict(pd.DataFrame({
        "image_path": [str(root / "study0/IM0.dcm")], "age_at_xray": [90.0], "sex": ["F"]}))
    assert pred.loc["study0/IM0.dcm", "predicted_bmd"] == pytest.approx(expected[0], abs=1e-6)
    errors = pd.read_csv(tmp_path / "b.errors.csv")
    assert len(errors) == 5 and errors["error"].str.startswith("no row of").all()


def test_results_table_cuts_a_torn_line(tmp_path):
    path = tmp_path / "t.csv"
    append_rows(path, pd.DataFrame({"row": [0, 1], "v": [0.5, 0.25]}))
    with open(path, "a") as f:
        f.write("2,0.1")
    assert read_rows(path)["row"].tolist() == [0, 1]
    append_rows(path, pd.DataFrame({"row": [2], "v": [0.125]}))
    assert read_rows(path)["v"].tolist() == [0.5, 0.25, 0.125]


def test_bad_predict_arguments_are_named(saved_model, archive, tmp_path, capsys):
    for args, words in ((["--model", saved_model, "--out", tmp_path / "x.csv"], "--dicom-dir"),
                        (["--csv", archive, "--model", saved_model, "--out", tmp_path / "x.csv",
                          "--key", "sex"], "repeats")):
        with pytest.raises(SystemExit) as exit:
            _predict(*args)
        assert exit.value.code == 2 and words in capsys.readouterr().err


def _running(pid):
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_pool_workers_exit_when_their_parent_is_killed(tmp_path):
    """A decoding worker (the archive predictor's, the DICOM node's) whose parent is
    SIGKILLed exits instead of waiting for work forever."""
    script = tmp_path / "parent.py"
    script.write_text("import os, time\n"
                      "from bmdkit.inference import spawn_pool\n"
                      "if __name__ == '__main__':\n"
                      "    pool = spawn_pool(1)\n"
                      "    print(pool.submit(os.getpid).result(), flush=True)\n"
                      "    time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)),
                              start_new_session=True)
    try:
        # a loaded CI machine imports slowly
        assert select.select([parent.stdout], [], [], 600)[0], "no worker started in 600 s"
        worker = int(parent.stdout.readline())
        assert _running(worker)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(worker), f"worker {worker} outlived its killed parent"
    finally:
        parent.stdout.close()
        try:
            os.killpg(parent.pid, signal.SIGKILL)  # whatever of the group is left
        except ProcessLookupError:
            pass
