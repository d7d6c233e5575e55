"""data.source "hf": a dataset by name from the local datasets cache (offline), as the Hub
leaves it, and a local dataset directory; streaming; undecoded reading; recorded skips."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from ireasoner.config import ConfigError, DataConfig, load_config
from ireasoner.data.sources import DataSourceError, decode_or_skip, load_images

datasets = pytest.importorskip("datasets")

REPO = "ireasoner-test/ChartPool"
FEATURES = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string")})


def png(shade: int, size: tuple[int, int] = (12, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, shade, shade)).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb() -> bytes:
    """A PNG whose header claims 20000 x 20000 pixels (only the header is ever read)."""
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, format="PNG")
    return buffer.getvalue()


def split(cells: list[bytes]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in cells],
         "question": [f"q{i}" for i in range(len(cells))]}, features=FEATURES)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, cache_like_the_hub) -> Path:
    """REPO with two configs: "charts" (train: 4 images, the third not an image, the fourth a
    decompression bomb; test: 1) and "diagrams" (train: 2)."""
    assert datasets.config.HF_HUB_OFFLINE  # the loads below can only come from the cache
    cache = tmp_path_factory.mktemp("hf") / "cache"
    cache_like_the_hub(cache, REPO, "charts", {
        "train": split([png(10), png(20), b"not an image", bomb()]), "test": split([png(90)])})
    cache_like_the_hub(cache, REPO, "diagrams", {"train": split([png(50), png(60)])})
    return cache


def hf_config(cache: Path, **hf: object) -> DataConfig:
    return DataConfig(source="hf", shuffle=False,
                      hf={"name": REPO, "config": "charts", "cache_dir": str(cache), **hf})


def shades(image_set) -> list[int]:
    """The first pixel of each usable image (decoding every record, as the stages would)."""
    return [r.image.getpixel((0, 0))[0] for _, r in decode_or_skip(image_set.records)[0]]


def skips(image_set) -> list[tuple[str, str]]:
    """(ref, reason) of what the listing refused, then of what decoding refuses."""
    return [(s.source_ref, s.reason)
            for s in image_set.skipped + decode_or_skip(image_set.records)[1]]


def test_a_cached_hub_dataset_loads_by_name_offline(hub_cache):
    image_set = load_images(hf_config(hub_cache))
    assert shades(image_set) == [10, 20]
    assert [r.image_id for r in image_set.records][:2] == [f"{REPO}:charts:train#0",
                                                           f"{REPO}:charts:train#1"]
    assert set(skips(image_set)) == {
        (f"{REPO}:charts:train#2", "not_an_image"),
        (f"{REPO}:charts:train#3", "decompression_bomb")}


def test_config_and_split_select_the_rows(hub_cache):
    assert shades(load_images(hf_config(hub_cache, config="diagrams"))) == [50, 60]
    assert shades(load_images(hf_config(hub_cache, split="test"))) == [90]


def test_streaming_reads_only_the_first_limit_rows(hub_cache):
    streamed = load_images(hf_config(hub_cache, streaming=True, limit=3))
    assert shades(streamed) == [10, 20]
    assert [r for _, r in skips(streamed)] == ["not_an_image"]  # row 3 was never read
    assert shades(load_images(hf_config(hub_cache, streaming=True, limit=1))) == [10]


def test_streaming_and_loading_give_the_same_records(hub_cache):
    loaded = load_images(hf_config(hub_cache))
    streamed = load_images(hf_config(hub_cache, streaming=True, limit=10))
    assert [(r.image_id, r.sha256) for _, r in decode_or_skip(loaded.records)[0]] == \
        [(r.image_id, r.sha256) for _, r in decode_or_skip(streamed.records)[0]]


def test_limit_without_streaming(hub_cache):
    assert shades(load_images(hf_config(hub_cache, limit=1))) == [10]


def test_datasets_never_decodes_an_image(hub_cache, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("datasets decoded an image")

    monkeypatch.setattr(datasets.Image, "decode_example", refuse)
    assert shades(load_images(hf_config(hub_cache))) == [10, 20]
    assert shades(load_images(hf_config(hub_cache, streaming=True, limit=2))) == [10, 20]


def test_the_configured_image_limits_apply(hub_cache):
    small_files = hf_config(hub_cache).model_copy(update={"max_file_bytes": 1024})
    assert len(bomb()) > 1024
    assert [r for _, r in skips(load_images(small_files))] == ["not_an_image",
                                                                "too_large_file"]


def test_a_dataset_not_in_the_cache_names_the_key_and_the_cache(hub_cache):
    with pytest.raises(DataSourceError, match=r"data\.hf\.name 'ireasoner-test/Nowhere'.*cache"):
        load_images(hf_config(hub_cache, name="ireasoner-test/Nowhere"))


def test_unknown_config_or_split_names_the_key(hub_cache):
    with pytest.raises(DataSourceError, match=r"(?s)data\.hf\.config.*charts.*diagrams"):
        load_images(hf_config(hub_cache, config="tables"))
    with pytest.raises(DataSourceError, match=r"data\.hf\.split.*validation"):
        load_images(hf_config(hub_cache, split="validation"))


def test_wrong_image_column_lists_the_columns(hub_cache):
    with pytest.raises(DataSourceError, match=r"no column 'picture'.*question"):
        load_images(hf_config(hub_cache).model_copy(update={"image_column": "picture"}))
    with pytest.raises(DataSourceError, match="column 'question' has type string"):
        load_images(hf_config(hub_cache).model_copy(update={"image_column": "question"}))


def test_a_local_dataset_directory_loads_by_path(tmp_path):
    (tmp_path / "pool" / "data").mkdir(parents=True)
    split([png(70), png(80)]).to_parquet(str(tmp_path / "pool" / "data" / "train-0.parquet"))
    image_set = load_images(DataConfig(source="hf", shuffle=False,
                                       hf={"name": str(tmp_path / "pool")}))
    assert shades(image_set) == [70, 80]


def test_hf_source_needs_a_name_and_streaming_a_limit():
    with pytest.raises(ConfigError, match=r"data\.hf\.name is required"):
        load_config(overrides=["data.source=hf"])
    with pytest.raises(ConfigError, match=r"data\.hf\.limit is required"):
        load_config(overrides=["data.source=hf", "data.hf.name=a/b", "data.hf.streaming=true"])
    with pytest.raises(ConfigError, match=r"data\.hf\.limit"):
        load_config(overrides=["data.source=hf", "data.hf.name=a/b", "data.hf.limit=0"])
    assert load_config(overrides=["data.source=hf", "data.hf.name=a/b"]).data.path is None
