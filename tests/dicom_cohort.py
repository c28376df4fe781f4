"""SYNTHETIC hip radiographs as CR DICOM files, for the DICOM node's tests.

The films are :func:`bmdkit.datasets.make_synthetic_cohort` with
``image_format="dicom"``: the same seed and subjects as the PNG cohort a test
model is fitted on, so a DICOM's pixels and header metadata are those of its
PNG twin. :func:`dciodvfy_errors` checks a DICOM file with dicom3tools.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from system_packages import ensure_debian_package

#: The model inputs of the tiny test model (what CR headers carry).
COLUMNS = ["image_path", "age_at_xray", "sex", "height_cm", "weight_kg"]


def tiny_model_and_dicoms(root, n_dicoms=6):
    """(model folder, DICOM folder) under ``root``: a split-conformal Concat model fitted on
    60 SYNTHETIC 32 px phantoms (seconds on one thread), and ``n_dicoms`` of them as CR files."""
    from bmdkit import ConcatBMDRegressor
    from bmdkit.datasets import make_synthetic_cohort
    from bmdkit.uncertainty import ConformalBMDRegressor

    root = Path(root)
    n = max(60, n_dicoms)
    X, y = make_synthetic_cohort(n=n, image_size=32, random_state=0, out_dir=root / "png")
    model = ConformalBMDRegressor(
        ConcatBMDRegressor(image_size=32, max_epochs=2, n_threads=1, random_state=0),
        method="split").fit(X[COLUMNS], y)
    model.save(root / "model")
    cohort_dicoms(n, 32, 0, range(n_dicoms), root / "dicom")
    return root / "model", root / "dicom"


def cohort_dicoms(n, image_size, random_state, subjects, folder):
    """Copy the CR DICOM files of ``subjects`` (row numbers) of the SYNTHETIC cohort
    ``make_synthetic_cohort(n, image_size, random_state, image_format="dicom")`` into
    ``folder``; return their paths. The whole cohort is rendered (its subjects depend on
    ``n``), in ``folder`` + ``"-cohort"``."""
    from bmdkit.datasets import make_synthetic_cohort

    folder = Path(folder)
    X, _ = make_synthetic_cohort(n=n, image_size=image_size, random_state=random_state,
                                 out_dir=folder.with_name(folder.name + "-cohort"),
                                 image_format="dicom")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in X["image_path"].iloc[list(subjects)]:
        paths.append(folder / Path(source).name)
        shutil.copyfile(source, paths[-1])
    return paths


def dciodvfy_errors(path):
    """The lines of dciodvfy's report on ``path`` that are errors."""
    dciodvfy = ensure_debian_package("dicom3tools", provides="dciodvfy")
    out = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def non_image_object(like, path):
    """A DICOM object that is no image (an Encapsulated PDF) in the patient of ``like``."""
    import pydicom
    from pydicom.dataset import Dataset

    source = pydicom.dcmread(like, stop_before_pixels=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID"):
        setattr(ds, keyword, getattr(source, keyword))
    ds.SeriesInstanceUID, ds.Modality, ds.InstanceNumber = generate_uid(), "DOC", 1
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
