"""Unlabeled images for training: sources, sanitising (bombs, modes, EXIF), synthetic charts."""

from ireasoner.data.images import ImageLimits, ImageRejected, image_sha256, load_image
from ireasoner.data.sources import (
    DataSourceError,
    ImageRecord,
    ImageSet,
    NoUsableImages,
    SkippedImage,
    images_for_iteration,
    load_images,
)
from ireasoner.data.synthetic import (
    SyntheticQA,
    SyntheticSample,
    generate_samples,
    read_synthetic,
    synth_command,
    write_synthetic,
)

__all__ = [
    "DataSourceError", "ImageLimits", "ImageRecord", "ImageRejected", "ImageSet",
    "NoUsableImages", "SkippedImage", "SyntheticQA", "SyntheticSample", "generate_samples",
    "image_sha256", "images_for_iteration", "load_image", "load_images", "read_synthetic",
    "synth_command", "write_synthetic",
]
