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


def write_cr_dicoms(X, folder):
    """Write each row of the synthetic cohort ``X`` as ``folder/<i>.dcm``; return the paths."""
    from pydicom.dataset import Dataset

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, row in enumerate(X.itertuples(index=False)):
        pixels = np.asarray(Image.open(row.image_path)).astype(np.uint16)
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
