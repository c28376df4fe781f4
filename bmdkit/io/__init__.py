"""Reading radiographs (PNG, JPEG, TIFF, BMP, DICOM), their DICOM header metadata, and caching."""

from bmdkit.io.cache import CacheInfo, cache_clear, cache_info, load_images, preprocess_image
from bmdkit.io.dicom_metadata import DICOM_FIELDS, dicom_metadata_problems, read_dicom_metadata
from bmdkit.io.readers import ImageInfo, dicom_files, read_image
from bmdkit.io.transforms import CONTRASTS, normalise_contrast, resize_with_padding

__all__ = [
    "CONTRASTS", "DICOM_FIELDS", "CacheInfo", "ImageInfo", "cache_clear", "cache_info", "dicom_files",
    "dicom_metadata_problems", "load_images", "normalise_contrast", "preprocess_image",
    "read_dicom_metadata", "read_image", "resize_with_padding",
]
