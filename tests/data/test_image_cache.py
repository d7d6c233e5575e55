"""Images are decoded when needed, through a cache bounded in bytes: start-up decodes one image
(to fail fast on a source with none usable), and memory stays within data.image_cache_mb."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

import ireasoner.data.sources as sources
from ireasoner.config import DataConfig
from ireasoner.data.cache import ImageCache, image_bytes
from ireasoner.data.images import ImageRejected
from ireasoner.data.sources import decode_or_skip, load_images


def png(shade: int, size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, shade, shade)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def forty_images(tmp_path: Path) -> Path:
    for i in range(40):
        (tmp_path / f"{i:03d}.png").write_bytes(png(i))
    return tmp_path


@pytest.fixture
def decodes(monkeypatch) -> list[object]:
    """Every payload the sources decode, in order."""
    seen: list[object] = []
    real = sources._sanitise

    def counting(data, limits):
        seen.append(data)
        return real(data, limits)

    monkeypatch.setattr(sources, "_sanitise", counting)
    return seen


def test_loading_a_source_decodes_only_its_first_image(forty_images, decodes):
    image_set = load_images(DataConfig(source="directory", path=str(forty_images)))
    assert len(image_set.records) == 40
    assert decodes == [image_set.records[0].payload]
    assert image_set.records[0].image is image_set.records[0].image  # cached: decoded once
    assert len(decodes) == 1


def test_the_cache_holds_at_most_its_size_and_keeps_the_most_recently_used(tmp_path):
    for i in range(12):  # 192 KB each once decoded: 5 fit in 1 MB
        (tmp_path / f"{i:03d}.png").write_bytes(png(i, (256, 256)))
    cfg = DataConfig(source="directory", path=str(tmp_path), shuffle=False, image_cache_mb=1)
    image_set = load_images(cfg)
    for record in image_set.records:
        assert record.image.getpixel((0, 0))[0] == int(record.image_id[:3])
    cache = image_set.cache
    assert len(cache) == 5 and cache.bytes == 5 * 256 * 256 * 3 and cache.evictions == 7

    one = 64 * 64 * 3
    small = ImageCache(max_bytes=3 * one)
    images = {i: Image.new("RGB", (64, 64), (i, i, i)) for i in range(5)}
    for i in (0, 1, 2, 0, 3):  # 0 used again before 3 arrives: 1 is the least recent
        small.get(str(i), lambda i=i: images[i])
    assert small.bytes == 3 * one == 3 * image_bytes(images[0]) and small.evictions == 1
    hits = small.hits
    small.get("1", lambda: images[1])
    assert small.hits == hits  # 1 was evicted: decoded again
    small.get("0", lambda: pytest.fail("0 must still be cached"))


def test_an_image_larger_than_the_cache_is_used_but_not_held():
    cache = ImageCache(max_bytes=100)
    image = Image.new("RGB", (64, 64))
    assert cache.get("big", lambda: image) is image
    assert len(cache) == 0 and cache.bytes == 0


def test_a_bad_image_found_late_is_a_skip_with_its_reason_and_is_read_once(tmp_path, decodes):
    (tmp_path / "a.png").write_bytes(png(1))
    (tmp_path / "b.png").write_bytes(png(2)[:60])  # truncated: only decoding can tell
    image_set = load_images(DataConfig(source="directory", path=str(tmp_path), shuffle=False))
    assert not image_set.skipped  # the listing cannot know
    usable, skipped = decode_or_skip(image_set.records)
    assert [r.image_id for _, r in usable] == ["a.png"]
    assert [(s.source_ref, s.reason) for s in skipped] == [("b.png", "truncated")]
    reads = len(decodes)
    with pytest.raises(ImageRejected, match="truncated"):
        _ = image_set.records[1].image
    assert len(decodes) == reads


def test_a_file_replaced_during_a_run_is_refused_not_silently_used(tmp_path):
    (tmp_path / "a.png").write_bytes(png(1))
    cfg = DataConfig(source="directory", path=str(tmp_path), image_cache_mb=0)  # no cache
    record = load_images(cfg).records[0]
    first = record.sha256
    (tmp_path / "a.png").write_bytes(png(200))
    with pytest.raises(ImageRejected, match="changed"):
        _ = record.image
    assert first
