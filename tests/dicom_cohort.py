"""SYNTHETIC hip radiographs as CR DICOM files with header metadata, for the DICOM node's tests.

:func:`write_cr_dicoms` turns the PNG phantoms of
:func:`bmdkit.datasets.make_synthetic_cohort` into CR images whose headers
carry PatientAge/Sex/Size/Weight, PixelSpacing and their own patient, study,
series and instance UIDs (one study per subject). It is the one place that
makes test DICOMs, to be replaced by ``make_synthetic_cohort(...,
image_format="dicom")`` once bmdkit.datasets has it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
#: The model inputs of the tiny test model (what CR headers carry).
COLUMNS = ["image_path", "age_at_xray", "sex", "height_cm", "weight_kg"]


def tiny_model_and_dicoms(root, n_dicoms=6):
    """(model folder, DICOM folder) under ``root``: a split-conformal Concat model fitted on
    60 SYNTHETIC 32 px phantoms (seconds on one thread), and ``n_dicoms`` of them as CR files."""
    from bmdkit import ConcatBMDRegressor
    from bmdkit.datasets import make_synthetic_cohort
    from bmdkit.uncertainty import ConformalBMDRegressor

    root = Path(root)
    X, y = make_synthetic_cohort(n=max(60, n_dicoms), image_size=32, random_state=0,
                                 out_dir=root / "png")
    model = ConformalBMDRegressor(
        ConcatBMDRegressor(image_size=32, max_epochs=2, n_threads=1, random_state=0),
        method="split").fit(X[COLUMNS], y)
    model.save(root / "model")
    write_cr_dicoms(X.head(n_dicoms), root / "dicom")
    return root / "model", root / "dicom"


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


def write_cr_dicoms(X, folder, shape=None):
    """Write each row of the synthetic cohort ``X`` as ``folder/<i>.dcm``; return the paths.

    ``shape`` (rows, columns): resize the phantoms to it, e.g. a radiograph's 2048 x 1664.
    """
    from pydicom.dataset import Dataset

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, row in enumerate(X.itertuples(index=False)):
        image = Image.open(row.image_path)
        if shape is not None:
            image = image.resize(shape[::-1], Image.BILINEAR)
        pixels = np.asarray(image).astype(np.uint16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.Modality, ds.BodyPartExamined = CR_STORAGE, "CR", "HIP"
        ds.PatientName, ds.PatientID = f"SYNTHETIC^{i:03d}", f"SYN{i:03d}"
        ds.PatientBirthDate, ds.PatientSex = "", row.sex
        ds.PatientAge = f"{int(row.age_at_xray):03d}Y"
        ds.PatientSize, ds.PatientWeight = f"{row.height_cm / 100:.2f}", f"{row.weight_kg:.1f}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = f"S{i}", f"A{i:05d}", ""
        ds.StudyDate, ds.StudyTime, ds.SeriesNumber, ds.InstanceNumber = "20260101", "120000", 1, 1
        ds.StudyDescription = "SYNTHETIC hip phantom"
        ds.PatientOrientation, ds.ViewPosition, ds.ImageLaterality = ["L", "F"], "AP", "R"
        ds.Manufacturer = "SYNTHETIC"
        ds.ImagerPixelSpacing = ds.PixelSpacing = [0.5, 0.5]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels.tobytes()
        path = folder / f"{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
