"""Compressed DICOM transfer syntaxes common in radiography decode to the same pixels."""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from bmdkit.io import read_image

# small test files that ship inside the pydicom package
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.mark.parametrize("compressed, reference", [
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless (python-gdcm)
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),  # JPEG 2000 lossless (pylibjpeg-openjpeg)
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm"),  # JPEG lossless, process 14 (python-gdcm)
])
def test_lossless_syntaxes_read_exactly_like_another_lossless_copy(compressed, reference):
    image = read_image(PYDICOM_FILES / compressed)
    assert image.std() > 0.05
    np.testing.assert_array_equal(image, read_image(PYDICOM_FILES / reference))
