"""Writing phantom films: 16-bit PNG, DICOM (CR) and float32 TIFF, each whole or not at all."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bmdkit.files import atomic_path

__all__ = ["save_dicom", "save_png", "save_tiff"]

_UID_ROOT = "bmdkit-synthetic-cohort-v2"
_STUDY_DATE, _STUDY_TIME = "20260101", "120000"


def save_png(path, image):
    """Write a uint16 image as a 16-bit greyscale PNG."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=1)


def save_tiff(path, values):
    """Write a float32 array as a single-channel 32-bit float TIFF."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(values, np.float32), mode="F").save(tmp, format="TIFF")


def save_dicom(path, image, *, spacing, patient, view, laterality, key):
    """Write a uint16 image as a DICOM computed radiograph (CR Image Storage), bone bright.

    Parameters
    ----------
    path : str or os.PathLike
    image : ndarray of uint16
    spacing : float
        Pixel spacing in mm (PixelSpacing and ImagerPixelSpacing).
    patient : mapping
        ``age_at_xray`` (years), ``sex`` ("F"/"M"), ``height_cm``, ``weight_kg``.
    view : {"hip", "pelvis"}
        BodyPartExamined HIP or PELVIS; ViewPosition is AP.
    laterality : {"R", "L"} or None
        Laterality (the hip of a hip film; ``None`` for a pelvis).
    key : sequence of str
        Identifies the film (seed, subject, size): its UIDs and
        AccessionNumber are derived from it, so the same cohort gets the same
        headers.

    Notes
    -----
    The header is a complete CR Image object (dciodvfy finds no error): the
    type 2 attributes without a synthetic value (PatientBirthDate,
    ReferringPhysicianName) are present and empty, StudyDate/StudyTime are a
    fixed date, PatientOrientation is that of an AP film (L, F) and
    Manufacturer names bmdkit's SYNTHETIC phantoms.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

    def uid(kind, *extra):
        return generate_uid(entropy_srcs=[_UID_ROOT, kind, *map(str, extra)])

    subject = [str(k) for k in key[:-1]]  # study and series do not depend on the image size
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = uid("instance", *key)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = uid("study", *subject)
    ds.SeriesInstanceUID = uid("series", *subject, view)
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "CR", "AP", view.upper()
    ds.PatientName, ds.PatientID = "SYNTHETIC^PHANTOM", "SYNTH-" + "-".join(subject)
    ds.PatientBirthDate, ds.ReferringPhysicianName = "", ""
    # SH: 16 characters at most, one per study
    ds.AccessionNumber = "SYN" + ds.StudyInstanceUID.rsplit(".", 1)[-1][-12:]
    ds.StudyDate, ds.StudyTime = _STUDY_DATE, _STUDY_TIME
    ds.StudyDescription = f"SYNTHETIC {view} phantom"
    ds.Manufacturer = "bmdkit SYNTHETIC phantom"
    ds.PatientOrientation = ["L", "F"]  # AP: the patient's left to the right, feet down
    ds.PatientAge = f"{int(patient['age_at_xray']):03d}Y"
    ds.PatientSex = patient["sex"]
    ds.PatientSize = f"{patient['height_cm'] / 100:.3f}"
    ds.PatientWeight = f"{patient['weight_kg']:.1f}"
    if laterality is not None:
        ds.Laterality = laterality  # not also ImageLaterality: the CR IOD allows one of them
    ds.SeriesDescription = ds.ImageComments = "SYNTHETIC phantom, not a clinical image"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.PixelSpacing = ds.ImagerPixelSpacing = [f"{spacing:.6g}"] * 2
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(image, "<u2").tobytes()
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
