from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from ireasoner.data.images import ImageLimits, ImageRejected, image_sha256, load_image

LIMITS = ImageLimits()


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def reason_for(data: bytes | Path, limits: ImageLimits = LIMITS) -> str:
    with pytest.raises(ImageRejected) as caught:
        load_image(data, limits)
    return caught.value.reason


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """20000x20000 1-bit PNG: ~50 KB on disk, 400 MB once decoded."""
    return encode(Image.new("1", (20000, 20000)), "PNG")


def test_rgb_png_keeps_its_pixels():
    original = Image.new("RGB", (30, 20), (12, 34, 56))
    loaded = load_image(encode(original, "PNG"), LIMITS)
    assert loaded.mode == "RGB" and loaded.size == (30, 20)
    assert loaded.getpixel((5, 5)) == (12, 34, 56)


def test_image_is_read_from_a_path(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    assert load_image(path, LIMITS).getpixel((0, 0)) == (1, 2, 3)
    assert load_image(str(path), LIMITS).size == (8, 8)


def test_zero_byte_input_is_rejected_as_empty(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert reason_for(tmp_path / "empty.png") == "empty_file"
    assert reason_for(b"") == "empty_file"


def test_missing_file_is_rejected_as_unreadable(tmp_path):
    assert reason_for(tmp_path / "absent.png") == "unreadable"


def test_file_over_max_file_bytes_is_rejected(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.effect_noise((64, 64), 80).convert("RGB"), "PNG"))
    assert path.stat().st_size > 2048
    assert reason_for(path, ImageLimits(max_file_bytes=2048)) == "too_large_file"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_rejected_as_truncated(fmt):
    data = encode(Image.effect_noise((64, 64), 80).convert("RGB"), fmt)
    assert reason_for(data[: len(data) // 2]) == "truncated"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_rejected_even_when_pillow_is_told_to_load_truncated_images(
        fmt, monkeypatch):
    # What importing lmms-eval does to the whole process.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(Image.effect_noise((64, 64), 80).convert("RGB"), fmt)
    assert reason_for(data[: len(data) // 2]) == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the flag is left as it was found


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    assert reason_for(path) == "not_an_image"


def test_formats_outside_the_raster_allow_list_are_refused():
    assert reason_for(encode(Image.new("RGB", (8, 8)), "EPS")) == "not_an_image"


def test_corrupt_body_after_a_valid_header_is_rejected():
    data = encode(Image.effect_noise((64, 64), 80).convert("RGB"), "PNG")
    corrupt = data[:60] + bytes(range(256)) * 8
    assert reason_for(corrupt) in {"unreadable", "truncated"}


def test_bomb_is_rejected_from_its_header_without_decoding(bomb_png, monkeypatch):
    def refuse_to_decode(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    assert len(bomb_png) < 100_000
    assert reason_for(bomb_png) == "decompression_bomb"


def test_own_pixel_limit_applies_below_pillows_warning_level(monkeypatch):
    def refuse_to_decode(self):
        raise AssertionError("pixels were decoded")

    data = encode(Image.new("L", (200, 200)), "PNG")
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    with pytest.raises(ImageRejected, match="200x200") as caught:
        load_image(data, ImageLimits(max_decoded_pixels=10_000))
    assert caught.value.reason == "decompression_bomb"


def test_extreme_aspect_ratio_is_rejected():
    assert reason_for(encode(Image.new("RGB", (2000, 5)), "PNG")) == "extreme_aspect_ratio"


def test_cmyk_jpeg_becomes_rgb_with_its_colour():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    loaded = load_image(encode(cmyk, "JPEG", quality=95), LIMITS)
    red, green, blue = loaded.getpixel((8, 8))
    assert loaded.mode == "RGB" and red > 200 and green < 60 and blue < 60


def test_16_bit_png_is_scaled_not_clipped():
    gradient = np.array([[0, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    data = encode(Image.fromarray(gradient), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    loaded = load_image(data, LIMITS)
    assert [loaded.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128),
                                                          (255, 255, 255)]


def test_32_bit_integer_image_outside_8_bits_is_stretched():
    values = np.array([[0, 500, 1000]], dtype=np.int32).repeat(4, axis=0)
    data = encode(Image.fromarray(values, mode="I"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    loaded = load_image(data, LIMITS)
    assert [loaded.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_palette_transparency_is_composited_onto_white():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    data = encode(palette, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).mode == "P"
    loaded = load_image(data, LIMITS)
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((1, 1)) == (200, 0, 0)


def test_rgba_alpha_is_composited_onto_white():
    rgba = Image.new("RGBA", (4, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 255, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    loaded = load_image(encode(rgba, "PNG"), LIMITS)
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((1, 0)) == (0, 0, 255)
    assert loaded.getpixel((2, 0))[0] in range(120, 136)


def test_gray_with_alpha_is_composited_onto_white():
    la = Image.new("LA", (2, 1), (0, 0))
    la.putpixel((1, 0), (40, 255))
    loaded = load_image(encode(la, "PNG"), LIMITS)
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((1, 0)) == (40, 40, 40)


def test_grayscale_becomes_three_equal_channels():
    loaded = load_image(encode(Image.new("L", (4, 4), 77), "PNG"), LIMITS)
    assert loaded.mode == "RGB" and loaded.getpixel((2, 2)) == (77, 77, 77)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    loaded = load_image(encode(image, "JPEG", exif=exif, quality=95), LIMITS)
    assert loaded.size == (20, 40)
    top, bottom = loaded.getpixel((10, 5)), loaded.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_large_image_is_downscaled_to_the_pixel_budget_keeping_aspect(fmt):
    data = encode(Image.new("RGB", (1600, 1200), (10, 120, 10)), fmt)
    loaded = load_image(data, ImageLimits(pixel_budget=10_000))
    width, height = loaded.size
    assert width * height <= 10_000
    assert width * height > 9_000
    assert abs(width / height - 4 / 3) < 0.03


def test_sha256_depends_on_pixels_and_size_not_on_file_format():
    image = Image.effect_noise((16, 8), 60).convert("RGB")
    from_png = load_image(encode(image, "PNG"), LIMITS)
    from_bmp = load_image(encode(image, "BMP"), LIMITS)
    assert image_sha256(from_png) == image_sha256(from_bmp) == image_sha256(image)
    transposed_shape = Image.frombytes("RGB", (8, 16), image.tobytes())
    assert image_sha256(transposed_shape) != image_sha256(image)
    changed = image.copy()
    changed.putpixel((0, 0), (0, 0, 0) if image.getpixel((0, 0)) != (0, 0, 0) else (1, 1, 1))
    assert image_sha256(changed) != image_sha256(image)


def test_sha256_is_a_fixed_function_of_the_pixels():
    # Pinned: the digest names images in artifacts, so it must not change between releases.
    expected = hashlib.sha256(b"RGB:2x2:" + b"\xff\x00\x00" * 4).hexdigest()
    assert image_sha256(Image.new("RGB", (2, 2), (255, 0, 0))) == expected
