"""Reading radiographs (PNG, JPEG, TIFF, BMP, DICOM) and caching them preprocessed."""

from bmdkit.io.cache import load_images
from bmdkit.io.readers import read_image
from bmdkit.io.transforms import resize_with_padding

__all__ = ["load_images", "read_image", "resize_with_padding"]
