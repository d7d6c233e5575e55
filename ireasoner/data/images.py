"""Sanitising one image: whatever arrives (a file, bytes) leaves as an RGB image within the pixel
budget, or is refused with a reason code the caller records and counts.

The size check reads only the header, before any pixel is decoded: a 20000×20000 PNG of zeros
is a few KB on disk and 400 MB in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ireasoner.config import DataConfig

# Raster formats that decode in-process; others (EPS would run Ghostscript) are refused.
ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "TIFF", "WEBP")
# Qwen2.5-VL's processor refuses images whose sides differ by more than this factor.
MAX_ASPECT_RATIO = 200.0

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
# What a broken file makes Pillow's decoders raise (it has no single exception type for it).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)
_TRUNCATION_FLAG = threading.Lock()


@dataclass(frozen=True)
class ImageLimits:
    max_file_bytes: int = 64 * 1024 * 1024
    max_decoded_pixels: int = 100_000_000
    pixel_budget: int = 1_003_520
    max_aspect_ratio: float = MAX_ASPECT_RATIO

    @classmethod
    def from_config(cls, cfg: DataConfig) -> ImageLimits:
        return cls(cfg.max_file_bytes, cfg.max_decoded_pixels, cfg.pixel_budget)


class ImageRejected(ValueError):
    """An input that cannot become a usable image; `reason` is a short code for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def load_image(data: bytes | str | Path, limits: ImageLimits) -> Image.Image:
    """Decode `data` (raw bytes, or a file path) to an RGB image within `limits.pixel_budget`.

    Raises ImageRejected with reason "empty_file", "too_large_file", "unreadable",
    "not_an_image", "decompression_bomb", "extreme_aspect_ratio", "truncated" or
    "unsupported_mode".
    """
    raw = data if isinstance(data, bytes) else _read_file(Path(data), limits)
    _check_byte_size(len(raw), limits)
    image = _open_header(raw)
    _check_dimensions(image.size, limits)
    _reduce_while_decoding(image, limits.pixel_budget)
    try:
        with _truncation_refused():
            image.load()
        image = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as err:
        reason = "truncated" if "truncated" in str(err) else "unreadable"
        raise ImageRejected(reason, f"{type(err).__name__}: {err}") from err
    return fit_to_budget(to_rgb(image), limits.pixel_budget)


@contextlib.contextmanager
def _truncation_refused() -> Iterator[None]:
    """Decode with Pillow's global LOAD_TRUNCATED_IMAGES off: lmms-eval sets it on when
    imported, which would make a truncated file load as a silently grey-filled picture. The
    flag is process-wide, so it is switched under a lock and restored at once."""
    with _TRUNCATION_FLAG:
        allowed = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = allowed


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency composited onto white and high-bit-depth pixels scaled to 8 bits."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        return _wide_gray_to_rgb(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError as err:
        raise ImageRejected("unsupported_mode", f"cannot convert mode {image.mode} to RGB") from err


def fit_to_budget(image: Image.Image, pixel_budget: int) -> Image.Image:
    """Downscale (keeping the aspect ratio) so that width × height <= pixel_budget."""
    width, height = image.size
    if width * height <= pixel_budget:
        return image
    scale = math.sqrt(pixel_budget / (width * height))
    target = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
    while target[0] * target[1] > pixel_budget:  # a side clamped to 1 can overshoot
        target = (max(1, target[0] - 1), max(1, target[1] - 1))
    return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def image_sha256(image: Image.Image) -> str:
    """Hash of the RGB pixels and the size: equal for equal pictures, whatever file held them."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    digest = hashlib.sha256(f"RGB:{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def _read_file(path: Path, limits: ImageLimits) -> bytes:
    try:
        _check_byte_size(path.stat().st_size, limits)
        return path.read_bytes()
    except OSError as err:
        raise ImageRejected("unreadable", f"{path}: {err.strerror or err}") from err


def _check_byte_size(num_bytes: int, limits: ImageLimits) -> None:
    if num_bytes == 0:
        raise ImageRejected("empty_file", "zero bytes")
    if num_bytes > limits.max_file_bytes:
        raise ImageRejected(
            "too_large_file", f"{num_bytes} bytes > max_file_bytes {limits.max_file_bytes}"
        )


def _open_header(raw: bytes) -> Image.Image:
    """Parse the header only; our own pixel limit replaces Pillow's warning below its hard one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(raw), formats=_registered_formats())
    except Image.DecompressionBombError as err:
        raise ImageRejected("decompression_bomb", str(err)) from err
    except UnidentifiedImageError as err:
        raise ImageRejected(
            "not_an_image", f"not one of the accepted formats {', '.join(ALLOWED_FORMATS)}"
        ) from err
    except _DECODE_ERRORS as err:
        raise ImageRejected("unreadable", f"{type(err).__name__}: {err}") from err


@lru_cache(maxsize=1)
def _registered_formats() -> tuple[str, ...]:
    """The allowed formats this Pillow build can decode (Pillow registers plugins lazily)."""
    Image.init()
    return tuple(name for name in ALLOWED_FORMATS if name in Image.OPEN)


def _check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageRejected("unreadable", f"header gives size {width}x{height}")
    if width * height > limits.max_decoded_pixels:
        raise ImageRejected(
            "decompression_bomb",
            f"{width}x{height} = {width * height} pixels > max_decoded_pixels "
            f"{limits.max_decoded_pixels}",
        )
    if max(width, height) / min(width, height) > limits.max_aspect_ratio:
        raise ImageRejected(
            "extreme_aspect_ratio", f"{width}x{height} exceeds {limits.max_aspect_ratio}:1"
        )


def _reduce_while_decoding(image: Image.Image, pixel_budget: int) -> None:
    """JPEG can decode at 1/2, 1/4 or 1/8 scale: far cheaper than decoding a photo in full."""
    width, height = image.size
    if width * height > pixel_budget:
        scale = math.sqrt(pixel_budget / (width * height))
        image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))


def _wide_gray_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit images use their full 0..65535 range; "I"/"F" are stretched only if outside 0..255."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if image.mode in _SIXTEEN_BIT_MODES:
        values = values / 257.0
    elif values.size and (values.min() < 0 or values.max() > 255):
        low, high = float(values.min()), float(values.max())
        values = (values - low) * (255.0 / max(high - low, 1e-12))
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")
