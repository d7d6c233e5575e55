from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ireasoner.config import DataConfig
from ireasoner.data.images import image_sha256
from ireasoner.data.sources import (
    DataSourceError,
    ImageSet,
    NoUsableImages,
    SkippedImage,
    decode_or_skip,
    images_for_iteration,
    load_images,
)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def directory_config(path: Path, **overrides: object) -> DataConfig:
    return DataConfig(source="directory", path=str(path), shuffle=False, **overrides)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.png").write_bytes(png((0, 0, 200)))
    (tmp_path / "a.png").write_bytes(png((200, 0, 0)))
    Image.new("RGB", (12, 10), (0, 200, 0)).save(tmp_path / "sub" / "c.JPG", format="JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "sub" / "cut.png").write_bytes(png((9, 9, 9), (64, 64))[:70])
    return tmp_path


def write_parquet(path: Path, columns: dict[str, list]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_directory_is_read_recursively_in_sorted_order(image_dir):
    image_set = load_images(directory_config(image_dir))
    assert [r.image_id for r in image_set.records] == [
        "a.png", "b.png", "empty.png", "sub/c.JPG", "sub/cut.png"]
    usable = [r for _, r in decode_or_skip(image_set.records)[0]]
    assert [r.image_id for r in usable] == ["a.png", "b.png", "sub/c.JPG"]
    assert usable[0].image.getpixel((0, 0)) == (200, 0, 0)
    assert all(r.sha256 == image_sha256(r.image) for r in usable)
    assert all(r.facts is None for r in image_set.records)


def all_skips(image_set: ImageSet) -> list[SkippedImage]:
    """What the listing refused, then what decoding every record refuses (as stages do)."""
    return image_set.skipped + decode_or_skip(image_set.records)[1]


def test_directory_skips_are_recorded_with_reasons(image_dir):
    image_set = load_images(directory_config(image_dir))
    assert [s.source_ref for s in image_set.skipped] == ["notes.txt"]  # listing: no decoding
    skips = all_skips(image_set)
    assert Counter(s.reason for s in skips) == {"empty_file": 1, "not_an_image": 1,
                                                "truncated": 1}
    assert {s.source_ref for s in skips} == {"notes.txt", "empty.png", "sub/cut.png"}


def test_shuffle_is_a_seeded_permutation(image_dir):
    def order(seed: int) -> list[str]:
        cfg = DataConfig(source="directory", path=str(image_dir), seed=seed, shuffle=True)
        return [r.image_id for r in load_images(cfg).records]

    assert order(3) == order(3)
    assert sorted(order(3)) == ["a.png", "b.png", "empty.png", "sub/c.JPG", "sub/cut.png"]
    assert len({tuple(order(seed)) for seed in range(8)}) > 1


def test_records_fit_the_configured_pixel_budget(tmp_path):
    (tmp_path / "wide.png").write_bytes(png((5, 5, 5), (200, 100)))
    record = load_images(directory_config(tmp_path, pixel_budget=800)).records[0]
    assert record.image.width * record.image.height <= 800


def test_source_without_usable_images_names_the_skip_reasons(tmp_path):
    (tmp_path / "readme.md").write_text("hello")
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(NoUsableImages, match="empty_file") as caught:
        load_images(directory_config(tmp_path))
    assert "not_an_image" in str(caught.value)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataSourceError, match="does not exist"):
        load_images(directory_config(tmp_path / "nowhere"))


def test_parquet_bytes_column_with_own_ids(tmp_path):
    path = write_parquet(tmp_path / "images.parquet", {
        "image": [png((1, 1, 1)), None, b"junk", png((2, 2, 2)), png((3, 3, 3))],
        "image_id": ["first", "second", "third", "fourth", "first"],
    })
    image_set = load_images(DataConfig(source="parquet", path=str(path), shuffle=False))
    usable, skips = decode_or_skip(image_set.records)
    assert [r.image_id for _, r in usable] == ["first", "fourth"]
    assert [r.source_ref for _, r in usable] == ["images.parquet#0", "images.parquet#3"]
    assert Counter(s.reason for s in image_set.skipped + skips) == {
        "duplicate_id": 1, "missing_image": 1, "not_an_image": 1}


def test_parquet_hf_style_struct_column_in_a_directory_of_files(tmp_path):
    struct = [{"bytes": png((4, 4, 4)), "path": "x.png"}, {"bytes": png((5, 5, 5)), "path": None}]
    write_parquet(tmp_path / "part-1.parquet", {"picture": struct})
    write_parquet(tmp_path / "part-0.parquet", {"picture": [{"bytes": png((6, 6, 6)),
                                                             "path": None}]})
    cfg = DataConfig(source="parquet", path=str(tmp_path), image_column="picture", shuffle=False)
    image_set = load_images(cfg)
    assert [r.image_id for r in image_set.records] == [
        "part-0.parquet#0", "part-1.parquet#0", "part-1.parquet#1"]
    assert image_set.records[0].image.getpixel((0, 0)) == (6, 6, 6)


def test_parquet_without_the_image_column_lists_the_columns(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"img": [png((1, 1, 1))]})
    with pytest.raises(DataSourceError, match=r"no column 'image'.*\['img'\]"):
        load_images(DataConfig(source="parquet", path=str(path)))


def test_parquet_column_of_the_wrong_type_is_refused(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"image": ["a/b.png"]})
    with pytest.raises(DataSourceError, match="expected image bytes"):
        load_images(DataConfig(source="parquet", path=str(path)))


def test_saved_hf_dataset_uses_its_train_split(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the dataset source needs `datasets`")
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string")})

    def split(colours: list[int], prefix: str):
        return datasets.Dataset.from_dict({
            "image": [{"bytes": png((c, c, c)), "path": None} for c in colours],
            "image_id": [f"{prefix}{c}" for c in colours],
        }, features=features)

    datasets.DatasetDict({"train": split([10, 20], "tr"), "test": split([30], "te")}).save_to_disk(
        str(tmp_path / "ds"))
    image_set = load_images(DataConfig(source="dataset", path=str(tmp_path / "ds"),
                                       shuffle=False))
    assert [r.image_id for r in image_set.records] == ["tr10", "tr20"]
    assert image_set.records[1].image.getpixel((0, 0)) == (20, 20, 20)
    assert image_set.records[0].source_ref == "train#0"


def test_saved_hf_dataset_without_a_train_split_is_refused(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the dataset source needs `datasets`")
    one = datasets.Dataset.from_dict({"image": [png((1, 1, 1))]})
    datasets.DatasetDict({"test": one, "validation": one}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DataSourceError, match="none is 'train'"):
        load_images(DataConfig(source="dataset", path=str(tmp_path / "ds")))


def test_synthetic_source_carries_the_drawn_facts():
    image_set = load_images(DataConfig(source="synthetic", synthetic_count=8, shuffle=False))
    assert len(image_set.records) == 8 and not image_set.skipped
    assert image_set.records[0].image_id == "synthetic-0-000000"
    assert image_set.records[0].facts["kind"] == "bar_chart"
    assert "values" in image_set.records[0].facts


def test_ids_and_hashes_are_stable_across_loads():
    cfg = DataConfig(source="synthetic", synthetic_count=5, seed=2)
    first, second = load_images(cfg), load_images(cfg)
    assert [(r.image_id, r.sha256) for r in first.records] == [
        (r.image_id, r.sha256) for r in second.records]


@pytest.fixture(scope="module")
def five_images() -> ImageSet:
    return load_images(DataConfig(source="synthetic", synthetic_count=5, shuffle=False))


def ids(records) -> list[str]:
    return [r.image_id for r in records]


def test_an_iteration_always_gets_the_same_images(five_images):
    assert ids(images_for_iteration(five_images, 7, 2, seed=1)) == ids(
        images_for_iteration(five_images, 7, 2, seed=1))


def test_each_epoch_visits_every_image_once(five_images):
    for epoch in range(3):
        batch = [images_for_iteration(five_images, epoch * 5 + i, 1, seed=4)[0]
                 for i in range(5)]
        assert sorted(ids(batch)) == sorted(ids(five_images.records))


def test_epochs_and_seeds_change_the_order(five_images):
    def epoch_order(epoch: int, seed: int) -> list[str]:
        return ids(images_for_iteration(five_images, epoch, 5, seed))

    assert len({tuple(epoch_order(e, 0)) for e in range(6)}) > 1
    assert len({tuple(epoch_order(0, s)) for s in range(6)}) > 1


def test_a_batch_may_span_two_epochs(five_images):
    batch = images_for_iteration(five_images, 1, 3, seed=0)  # positions 3..5: epochs 0 and 1
    whole = ids(images_for_iteration(five_images, 0, 10, seed=0))
    assert ids(batch) == whole[3:6]


def test_bad_iteration_arguments_are_refused(five_images):
    with pytest.raises(ValueError):
        images_for_iteration(five_images, -1, 1, seed=0)
    with pytest.raises(ValueError):
        images_for_iteration(five_images, 0, 0, seed=0)


# ---- paths that escape the source's root ----------------------------------------------------
def test_directory_follows_no_symbolic_link_out_of_its_root(tmp_path):
    root, outside = tmp_path / "images", tmp_path / "private"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_bytes(png((1, 2, 3)))
    (root / "a.png").write_bytes(png((9, 9, 9)))
    (root / "link-out.png").symlink_to(outside / "secret.png")
    (root / "sub" / "dir-out").symlink_to(outside)
    (root / "link-in.png").symlink_to(root / "a.png")
    image_set = load_images(directory_config(root))
    assert [r.image_id for r in image_set.records] == ["a.png", "link-in.png"]
    assert {(s.source_ref, s.reason) for s in image_set.skipped} == {
        ("link-out.png", "outside_root"), ("sub/dir-out", "outside_root")}
    assert "private" in next(s.detail for s in image_set.skipped if s.source_ref == "link-out.png")


@pytest.mark.parametrize("path", ["../secret.png", "sub/../../secret.png", "ABSOLUTE"])
def test_parquet_path_cells_outside_the_data_are_refused(tmp_path, path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "secret.png").write_bytes(png((1, 2, 3)))
    (data / "ok.png").write_bytes(png((4, 5, 6)))
    path = str(tmp_path / "secret.png") if path == "ABSOLUTE" else path
    write_parquet(data / "rows.parquet", {"image": [{"bytes": None, "path": "ok.png"},
                                                    {"bytes": None, "path": path}]})
    image_set = load_images(DataConfig(source="parquet", path=str(data), shuffle=False))
    assert [r.image_id for r in image_set.records] == ["rows.parquet#0"]
    assert [(s.source_ref, s.reason) for s in image_set.skipped] == [
        ("rows.parquet#1", "outside_root")]
