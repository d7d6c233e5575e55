"""Where the unlabeled images come from: a synthetic set, a directory, Parquet files, a saved
HF dataset or a HF dataset by name (`ireasoner.data.hf`). Every source yields the same ImageSet: sanitised RGB records in a deterministic
order, and the inputs it skipped with their reasons (counted, never silently dropped)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ireasoner.config import DataConfig
from ireasoner.data.errors import DataSourceError
from ireasoner.data.hf import open_hf_split
from ireasoner.data.images import (
    ImageLimits,
    ImageRejected,
    fit_to_budget,
    image_sha256,
    load_image,
    to_rgb,
)
from ireasoner.data.synthetic import generate_samples
from ireasoner.data.world import world_samples
from ireasoner.seeding import derive_seed

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
)
ID_COLUMN = "image_id"
_BATCH_ROWS = 64


@dataclass(frozen=True)
class ImageRecord:
    image_id: str  # stable across runs: a relative path, a row reference or the source's own id
    sha256: str
    image: Image.Image
    source_ref: str
    facts: dict[str, Any] | None = None  # what a synthetic image was drawn from


@dataclass(frozen=True)
class SkippedImage:
    source_ref: str
    reason: str
    detail: str


@dataclass
class ImageSet:
    records: list[ImageRecord]
    skipped: list[SkippedImage] = field(default_factory=list)

    def skip_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.reason for s in self.skipped).items()))


class NoUsableImages(DataSourceError):
    """The source was read but every input was skipped."""


@dataclass(frozen=True)
class _Candidate:
    image_id: str
    source_ref: str
    data: bytes | Path | Image.Image
    facts: dict[str, Any] | None = None


def load_images(cfg: DataConfig) -> ImageSet:
    """All usable images of the configured source, sanitised; shuffled with cfg.seed if asked."""
    readers = {"synthetic": _synthetic, "world": _world, "directory": _directory,
               "parquet": _parquet, "dataset": _dataset, "hf": _hf}
    image_set = _collect(readers[cfg.source](cfg), ImageLimits.from_config(cfg))
    if not image_set.records:
        counts = ", ".join(f"{reason} ×{n}" for reason, n in image_set.skip_counts().items())
        where = cfg.hf.name if cfg.source == "hf" else cfg.path
        raise NoUsableImages(f"no usable image in data source {cfg.source!r} ({where}): "
                             f"{len(image_set.skipped)} skipped ({counts or 'no inputs found'})")
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(image_set.records)
    return image_set


def images_for_iteration(image_set: ImageSet, iteration: int, batch_size: int,
                         seed: int) -> list[ImageRecord]:
    """The batch of one iteration: walks a fresh seeded permutation each epoch, so the same
    iteration always gets the same images, whether the run was resumed or not."""
    count = len(image_set.records)
    if count == 0:
        raise ValueError("the image set is empty")
    if iteration < 0 or batch_size < 1:
        raise ValueError(f"need iteration >= 0 and batch_size >= 1, got {iteration}, {batch_size}")
    orders: dict[int, list[int]] = {}
    batch = []
    for position in range(iteration * batch_size, (iteration + 1) * batch_size):
        epoch, offset = divmod(position, count)
        if epoch not in orders:
            orders[epoch] = random.Random(derive_seed(seed, epoch, "data")).sample(
                range(count), count)
        batch.append(image_set.records[orders[epoch][offset]])
    return batch


def _collect(candidates: Iterator[_Candidate | SkippedImage], limits: ImageLimits) -> ImageSet:
    image_set = ImageSet(records=[])
    seen_ids: set[str] = set()
    for item in candidates:
        if isinstance(item, SkippedImage):
            image_set.skipped.append(item)
            continue
        if item.image_id in seen_ids:
            image_set.skipped.append(SkippedImage(
                item.source_ref, "duplicate_id", f"image_id {item.image_id!r} already used"))
            continue
        try:
            image = _sanitise(item.data, limits)
        except ImageRejected as err:
            image_set.skipped.append(SkippedImage(item.source_ref, err.reason, err.detail))
            continue
        seen_ids.add(item.image_id)
        image_set.records.append(ImageRecord(item.image_id, image_sha256(image), image,
                                             item.source_ref, item.facts))
    return image_set


def _sanitise(data: bytes | Path | Image.Image, limits: ImageLimits) -> Image.Image:
    if isinstance(data, Image.Image):
        return fit_to_budget(to_rgb(data), limits.pixel_budget)
    return load_image(data, limits)


def _synthetic(cfg: DataConfig) -> Iterator[_Candidate]:
    for index, sample in enumerate(generate_samples(cfg.synthetic_count, cfg.seed)):
        facts = {"kind": sample.kind, **sample.facts}
        yield _Candidate(sample.image_id, f"synthetic:{cfg.seed}/{index}", sample.image, facts)


def _world(cfg: DataConfig) -> Iterator[_Candidate]:
    # The train split only, and no facts: the RL stages never see a world label (the held-out
    # and validation splits are disjoint from these images by construction).
    for index, sample in enumerate(world_samples("train", cfg.synthetic_count, cfg.seed)):
        yield _Candidate(sample.image_id, f"world:{cfg.seed}/train/{index}", sample.image)


def _directory(cfg: DataConfig) -> Iterator[_Candidate | SkippedImage]:
    root = _existing_path(cfg)
    if not root.is_dir():
        raise DataSourceError(f"data.path {root} is not a directory")
    for path in sorted((p for p in root.rglob("*") if p.is_file()),
                       key=lambda p: p.relative_to(root).as_posix()):
        relative = path.relative_to(root).as_posix()
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            yield _Candidate(relative, relative, path)
        else:
            yield SkippedImage(relative, "not_an_image",
                               f"extension {path.suffix or '(none)'!r} is not an image type")


def _parquet(cfg: DataConfig) -> Iterator[_Candidate | SkippedImage]:
    root = _existing_path(cfg)
    files = [root] if root.is_file() else sorted(root.rglob("*.parquet"))
    if not files:
        raise DataSourceError(f"no .parquet file under data.path {root}")
    for file in files:
        parquet = pq.ParquetFile(file)
        columns = _columns_to_read(parquet.schema_arrow, cfg.image_column, str(file))
        prefix = file.name if file == root else file.relative_to(root).as_posix()
        start = 0
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            yield from _rows(batch, cfg.image_column, prefix, start, file.parent)
            start += batch.num_rows


def _dataset(cfg: DataConfig) -> Iterator[_Candidate | SkippedImage]:
    try:
        import datasets  # heavy, and only this source needs it
    except ImportError as err:
        raise DataSourceError("data.source 'dataset' needs the `datasets` package "
                              "(it comes with lmms-eval)") from err
    root = _existing_path(cfg)
    try:
        loaded = datasets.load_from_disk(str(root))
    except FileNotFoundError as err:
        raise DataSourceError(f"data.path {root}: not a saved HF dataset ({err})") from err
    if isinstance(loaded, datasets.DatasetDict):
        split, dataset = _one_split(loaded, root)
    else:
        split, dataset = "data", loaded
    columns = _columns_to_read(dataset.data.schema, cfg.image_column, str(root))
    start = 0
    for batch in dataset.select_columns(columns).with_format("arrow").iter(_BATCH_ROWS):
        yield from _rows(batch, cfg.image_column, split, start, root)
        start += batch.num_rows


def _hf(cfg: DataConfig) -> Iterator[_Candidate | SkippedImage]:
    split = open_hf_split(cfg)
    columns = _columns_to_read(split.schema, cfg.image_column, split.description)
    start = 0
    for batch in split.batches(columns, _BATCH_ROWS):
        # A cell without bytes names a file: absolute in the local cache, or local to the data.
        yield from _rows(batch, cfg.image_column, split.prefix, start, Path(str(cfg.hf.name)))
        start += batch.num_rows


def _one_split(splits: Any, root: Path) -> tuple[str, Any]:
    """Train on one split only: mixing in a test split would leak evaluation images."""
    names = sorted(splits)
    if len(names) == 1 or "train" in names:
        name = names[0] if len(names) == 1 else "train"
        return name, splits[name]
    raise DataSourceError(f"dataset at {root} has splits {names} and none is 'train': point "
                          f"data.path at one split's directory")


def _existing_path(cfg: DataConfig) -> Path:
    path = Path(str(cfg.path))
    if not path.exists():
        raise DataSourceError(f"data.path {path} does not exist (data.source {cfg.source!r})")
    return path


def _columns_to_read(schema: pa.Schema, image_column: str, where: str) -> list[str]:
    if image_column not in schema.names:
        raise DataSourceError(f"{where}: no column {image_column!r} (data.image_column); "
                              f"columns are {schema.names}")
    kind = schema.field(image_column).type
    holds_bytes = pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or (
        pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0)
    if not holds_bytes:
        raise DataSourceError(f"{where}: column {image_column!r} has type {kind}; expected image "
                              "bytes or a struct with a 'bytes' field (HF Image feature)")
    return [image_column] + ([ID_COLUMN] if ID_COLUMN in schema.names else [])


def _rows(batch: pa.RecordBatch | pa.Table, image_column: str, prefix: str, start: int,
          base_dir: Path) -> Iterator[_Candidate | SkippedImage]:
    images = batch.column(image_column)
    ids = batch.column(ID_COLUMN) if ID_COLUMN in batch.schema.names else None
    for offset in range(batch.num_rows):
        ref = f"{prefix}#{start + offset}"
        data = _cell_payload(images[offset].as_py(), base_dir)
        if data is None:
            yield SkippedImage(ref, "missing_image", "the image cell holds neither bytes nor path")
            continue
        own_id = ids[offset].as_py() if ids is not None else None
        yield _Candidate(ref if own_id is None else str(own_id), ref, data)


def _cell_payload(cell: bytes | dict[str, Any] | None, base_dir: Path) -> bytes | Path | None:
    """A bytes cell, or HF's {"bytes", "path"} struct (a path is relative to the data)."""
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return cell["bytes"]
        return base_dir / cell["path"] if cell.get("path") else None
    return cell
