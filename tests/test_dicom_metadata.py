"""Age, sex, height and weight from DICOM headers, and load_cohort(dicom_metadata=...)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from bmdkit import load_cohort
from bmdkit.checks import InputError
from bmdkit.io import read_dicom_metadata, read_image


def write_dicom(path, **tags):
    """A small real DICOM radiograph (16-bit pixels) carrying the given patient tags."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital x-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", path.stem
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 500
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, 8, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def tagged(tmp_path):
    """Four files: PatientAge in years/months, birth date + study date, and acquisition date."""
    return [
        write_dicom(tmp_path / "a.dcm", PatientAge="076Y", PatientSex="F",
                    PatientSize="1.62", PatientWeight="61.5"),
        write_dicom(tmp_path / "b.dcm", PatientAge="900M", PatientSex="M",
                    PatientSize="1.755", PatientWeight="80"),
        write_dicom(tmp_path / "c.dcm", PatientBirthDate="19500315", StudyDate="20250315",
                    PatientSex="M", PatientSize="1.70", PatientWeight="72"),
        write_dicom(tmp_path / "d.dcm", PatientBirthDate="19480101", AcquisitionDate="20240101",
                    PatientSex="F", PatientSize="1.58", PatientWeight="55"),
    ]


def test_reads_every_age_form_and_converts_height_to_cm(tagged):
    meta = read_dicom_metadata(tagged)
    assert list(meta.columns) == ["age_at_xray", "sex", "height_cm", "weight_kg"]
    np.testing.assert_allclose(meta["age_at_xray"], [76.0, 75.0, 75.0, 76.0], atol=0.01)
    assert meta["sex"].tolist() == ["F", "M", "M", "F"]
    np.testing.assert_allclose(meta["height_cm"], [162.0, 175.5, 170.0, 158.0])
    np.testing.assert_allclose(meta["weight_kg"], [61.5, 80.0, 72.0, 55.0])
    assert read_image(tagged[0]).shape == (8, 8)  # the files are real, readable radiographs


def test_load_cohort_fills_only_the_columns_the_csv_lacks(tagged, tmp_path):
    names = [p.name for p in tagged]
    pd.DataFrame({"image_path": names, "sex": ["W", "W", "W", "W"], "smoker": [0, 1, 0, 0],
                  "bmd": [0.8, 0.9, 0.85, 0.7]}).to_csv(tmp_path / "c.csv", index=False)
    X, y = load_cohort(tmp_path / "c.csv", target="bmd", dicom_metadata=True)
    assert list(X.columns) == ["image_path", "sex", "smoker", "age_at_xray", "height_cm",
                               "weight_kg"]
    assert X["sex"].tolist() == ["W"] * 4  # the CSV's own column wins
    np.testing.assert_allclose(X["height_cm"], [162.0, 175.5, 170.0, 158.0])
    X, _ = load_cohort(tmp_path / "c.csv", target="bmd", dicom_metadata={"age": "age"})
    assert list(X.columns) == ["image_path", "sex", "smoker", "age"]
    X, _ = load_cohort(tmp_path / "c.csv", target="bmd")
    assert "age_at_xray" not in X.columns  # off by default


def test_one_error_names_every_row_missing_a_needed_tag(tmp_path):
    files = [write_dicom(tmp_path / "ok.dcm", PatientAge="070Y", PatientSex="F",
                         PatientSize="1.6", PatientWeight="60"),
             write_dicom(tmp_path / "noage.dcm", PatientSex="M", PatientSize="1.8",
                         PatientWeight="90", PatientBirthDate="19500101"),
             write_dicom(tmp_path / "zero.dcm", PatientAge="070Y", PatientSex="F",
                         PatientSize="0", PatientWeight="60")]
    pd.DataFrame({"image_path": [f.name for f in files], "bmd": [0.8, 0.9, 0.85]}).to_csv(
        tmp_path / "c.csv", index=False)
    with pytest.raises(InputError, match="2 rows lack DICOM header tags") as err:
        load_cohort(tmp_path / "c.csv", target="bmd", dicom_metadata=True)
    assert set(err.value.problems) == {"row 1", "row 2"}
    assert "PatientAge" in err.value.problems["row 1"]
    assert err.value.problems["row 2"] == "no PatientSize"  # height 0 is "unknown"
    # Not needing height, the same table loads.
    X, _ = load_cohort(tmp_path / "c.csv", target="bmd", dicom_metadata={"sex": "sex"})
    assert X["sex"].tolist() == ["F", "M", "F"]
    with pytest.raises(InputError, match="fields unknown"):
        load_cohort(tmp_path / "c.csv", target="bmd", dicom_metadata={"bmi": "bmi"})


def test_real_dicoms(real_data, tmp_path):
    files = sorted((real_data / "dicom").glob("*.dcm")) + sorted(
        (real_data / "ddh_xray").glob("*.dcm"))
    meta = read_dicom_metadata(files, index=[f.name for f in files])
    # RG1: born 1940-03-05, studied 2004-08-26; RG3: born 1979-04-08, studied 2004-08-26.
    assert meta.loc["RG1_J2KI.dcm", "age_at_xray"] == pytest.approx(64.48, abs=0.01)
    assert meta.loc["RG3_J2KR.dcm", "age_at_xray"] == pytest.approx(25.38, abs=0.01)
    assert meta.loc[["RG1_J2KI.dcm", "RG3_J2KR.dcm"], "sex"].tolist() == ["F", "F"]
    assert meta.drop(index=["RG1_J2KI.dcm", "RG3_J2KR.dcm"]).isna().all().all()
    # These exports carry no height or weight, and the DDH files (and the CT) no age or sex.
    pd.DataFrame({"image_path": [str(f) for f in files], "bmd": 0.8}).to_csv(
        tmp_path / "c.csv", index=False)
    with pytest.raises(InputError, match="11 rows lack") as err:
        load_cohort(tmp_path / "c.csv", target="bmd", dicom_metadata={"age": "age", "sex": "sex"})
    assert {files[int(k.split()[1])].name for k in err.value.problems} == {
        f.name for f in files if not f.name.startswith("RG")}
    rg = [str(f) for f in files if f.name.startswith("RG")]
    pd.DataFrame({"image_path": rg, "bmd": 0.8}).to_csv(tmp_path / "rg.csv", index=False)
    X, _ = load_cohort(tmp_path / "rg.csv", target="bmd", dicom_metadata={"age": "age",
                                                                         "sex": "sex"})
    assert X["sex"].tolist() == ["F", "F"] and X["age"].between(25, 65).all()
