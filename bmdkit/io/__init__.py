"""Reading radiographs (PNG, JPEG, TIFF, BMP, DICOM) and caching them preprocessed."""

from bmdkit.io.cache import CacheInfo, cache_clear, cache_info, load_images
from bmdkit.io.readers import ImageInfo, read_image
from bmdkit.io.transforms import CONTRASTS, normalise_contrast, resize_with_padding

__all__ = [
    "CONTRASTS", "CacheInfo", "ImageInfo", "cache_clear", "cache_info", "load_images",
    "normalise_contrast", "read_image", "resize_with_padding",
]
