"""Training and validation data: image folders, Vimeo90K, reproducible crops."""

from kdlic.data.images import IMAGE_EXTENSIONS, find_images, load_rgb
from kdlic.data.sampling import CropSource, StepBatches, validation_crops

__all__ = [
    "IMAGE_EXTENSIONS",
    "CropSource",
    "StepBatches",
    "find_images",
    "load_rgb",
    "validation_crops",
]
