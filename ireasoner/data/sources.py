"""Where the unlabeled images come from: a synthetic set, a directory, Parquet files, a saved
HF dataset or a HF dataset by name (`ireasoner.data.hf`). Every source yields the same ImageSet:
records in a deterministic order, each decoded to a sanitised RGB image only when a stage needs
it (through a bounded cache, `ireasoner.data.cache`), and the inputs it skipped with their
reasons (counted, never silently dropped)."""

from __future__ import annotations

import os
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
from ireasoner.data.cache import ImageCache
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


class ImageRecord:
    """One listed input: its stable id and where its bytes are; decoded only when `image` (or
    `sha256`) is read, through its set's cache. Reading either raises ImageRejected for an
    input that turns out not to be a usable image."""

    __slots__ = ("_decoder", "facts", "image_id", "payload", "source_ref")

    def __init__(self, image_id: str, source_ref: str, payload: bytes | str | Path | Image.Image,
                 facts: dict[str, Any] | None, decoder: _Decoder):
        self.image_id = image_id  # stable across runs: a relative path, a row reference, an id
        self.source_ref = source_ref
        self.payload = payload  # a file, encoded bytes, or (synthetic) a drawn picture
        self.facts = facts  # what a synthetic image was drawn from
        self._decoder = decoder

    @property
    def image(self) -> Image.Image:
        return self._decoder.image(self)

    @property
    def sha256(self) -> str:
        """Hash of the sanitised pixels (image_sha256)."""
        return self._decoder.sha256(self)

    def __repr__(self) -> str:
        return f"ImageRecord({self.image_id!r}, {self.source_ref!r})"


@dataclass(frozen=True)
class SkippedImage:
    source_ref: str
    reason: str
    detail: str


class _Decoder:
    """Sanitises a record's payload on demand. Remembers each image's hash (a re-decoded image
    must be the same picture: a file changed under a running run is refused) and each
    rejection (a bad input is read once)."""

    def __init__(self, limits: ImageLimits, cache: ImageCache):
        self.limits = limits
        self.cache = cache
        self._hashes: dict[str, str] = {}
        self._rejected: dict[str, ImageRejected] = {}

    def image(self, record: ImageRecord) -> Image.Image:
        if record.image_id in self._rejected:
            raise self._rejected[record.image_id]
        return self.cache.get(record.image_id, lambda: self._decode(record))

    def sha256(self, record: ImageRecord) -> str:
        if record.image_id not in self._hashes:
            self.image(record)
        return self._hashes[record.image_id]

    def _decode(self, record: ImageRecord) -> Image.Image:
        try:
            image = _sanitise(record.payload, self.limits)
        except ImageRejected as err:
            self._rejected[record.image_id] = err
            raise
        digest = image_sha256(image)
        known = self._hashes.setdefault(record.image_id, digest)
        if known != digest:
            raise ImageRejected("changed", f"{record.source_ref} decodes to other pixels than "
                                "earlier in this run (the file was replaced)")
        return image


@dataclass
class ImageSet:
    records: list[ImageRecord]
    skipped: list[SkippedImage] = field(default_factory=list)
    cache: ImageCache | None = None

    def skip_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.reason for s in self.skipped).items()))


class NoUsableImages(DataSourceError):
    """The source was read but every input was skipped."""


@dataclass(frozen=True)
class _Candidate:
    image_id: str
    source_ref: str
    data: bytes | str | Path | Image.Image
    facts: dict[str, Any] | None = None


def load_images(cfg: DataConfig) -> ImageSet:
    """Every input of the configured source, listed (not decoded); shuffled with cfg.seed if
    asked. Inputs the listing can refuse (not an image file, a missing cell, a duplicate id)
    are in `skipped`; an input found unusable when it is first decoded raises ImageRejected
    then, and the stage that needed it records the skip. The first usable image is decoded
    here, so that a source with none fails now, naming the reasons."""
    readers = {"synthetic": _synthetic, "world": _world, "directory": _directory,
               "parquet": _parquet, "dataset": _dataset, "hf": _hf}
    cache = ImageCache(cfg.image_cache_mb * 1024 * 1024)
    image_set = _collect(readers[cfg.source](cfg), _Decoder(ImageLimits.from_config(cfg), cache))
    image_set.cache = cache
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(image_set.records)
    _drop_leading_rejects(image_set)
    if not image_set.records:
        counts = ", ".join(f"{reason} ×{n}" for reason, n in image_set.skip_counts().items())
        where = cfg.hf.name if cfg.source == "hf" else cfg.path
        raise NoUsableImages(f"no usable image in data source {cfg.source!r} ({where}): "
                             f"{len(image_set.skipped)} skipped ({counts or 'no inputs found'})")
    return image_set


def decode_or_skip(records: list[ImageRecord]
                   ) -> tuple[list[tuple[int, ImageRecord]], list[SkippedImage]]:
    """Decode each record: the (position, record) of those usable, a skip for each that is not
    (the caller records it: an input found bad late is still counted, never lost)."""
    usable, skipped = [], []
    for position, record in enumerate(records):
        try:
            _ = record.image
        except ImageRejected as err:
            skipped.append(SkippedImage(record.source_ref, err.reason, err.detail))
            continue
        usable.append((position, record))
    return usable, skipped


def _drop_leading_rejects(image_set: ImageSet) -> None:
    """Decode records in order until one is usable; those rejected before it are skips."""
    while image_set.records:
        record = image_set.records[0]
        try:
            _ = record.image  # decoded once here, then cached for its first use
            return
        except ImageRejected as err:
            image_set.skipped.append(SkippedImage(record.source_ref, err.reason, err.detail))
            image_set.records.pop(0)


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


def _collect(candidates: Iterator[_Candidate | SkippedImage], decoder: _Decoder) -> ImageSet:
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
        seen_ids.add(item.image_id)
        image_set.records.append(ImageRecord(item.image_id, item.source_ref, item.data,
                                             item.facts, decoder))
    return image_set


def _sanitise(data: bytes | str | Path | Image.Image, limits: ImageLimits) -> Image.Image:
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
    base = str(root)
    for relative, escape in sorted(_files_under(root)):
        if escape:
            yield SkippedImage(relative, "outside_root", escape)
            continue
        suffix = os.path.splitext(relative)[1]  # str paths: pathlib costs seconds per 100,000
        if suffix.lower() in IMAGE_EXTENSIONS:
            yield _Candidate(relative, relative, f"{base}/{relative}")
        else:
            yield SkippedImage(relative, "not_an_image",
                               f"extension {suffix or '(none)'!r} is not an image type")


def _files_under(root: Path) -> Iterator[tuple[str, str]]:
    """(relative POSIX path, "") of the files under root, from directory entries alone (no
    stat per file: 100,000 images list in about a second); a symbolic link is followed only
    to a file inside root, else it comes with why it is refused (a link must not make the
    source read what its root does not hold)."""
    real_root = os.path.realpath(root)
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(os.path.join(root, folder)) as entries:
            for entry in entries:
                relative = f"{folder}/{entry.name}" if folder else entry.name
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not _inside(target, real_root):
                        yield relative, f"a symbolic link to {target}, outside data.path"
                    elif os.path.isdir(target):
                        yield relative, "a symbolic link to a directory (not followed)"
                    elif os.path.isfile(target):
                        yield relative, ""
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(relative)
                elif entry.is_file(follow_symlinks=False):
                    yield relative, ""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


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
            yield from _rows(batch, cfg.image_column, prefix, start, file.parent,
                             (root if root.is_dir() else root.parent,))
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
        yield from _rows(batch, cfg.image_column, split.prefix, start, Path(str(cfg.hf.name)),
                         _hf_roots(cfg))
        start += batch.num_rows


def _hf_roots(cfg: DataConfig) -> tuple[Path, ...]:
    """Where an HF dataset's path cells may point: the local dataset, the datasets cache and
    the Hub's file cache (downloaded data files)."""
    import datasets
    import huggingface_hub.constants

    cache = cfg.hf.cache_dir or datasets.config.HF_DATASETS_CACHE
    return (Path(str(cfg.hf.name)), Path(cache), Path(huggingface_hub.constants.HF_HUB_CACHE))


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
          base_dir: Path, roots: tuple[Path, ...] = ()) -> Iterator[_Candidate | SkippedImage]:
    """`roots`: where path cells may point (default: base_dir)."""
    images = batch.column(image_column)
    ids = batch.column(ID_COLUMN) if ID_COLUMN in batch.schema.names else None
    for offset in range(batch.num_rows):
        ref = f"{prefix}#{start + offset}"
        try:
            data = _cell_payload(images[offset].as_py(), base_dir, roots or (base_dir,))
        except PathEscapes as err:
            yield SkippedImage(ref, "outside_root", str(err))
            continue
        if data is None:
            yield SkippedImage(ref, "missing_image", "the image cell holds neither bytes nor path")
            continue
        own_id = ids[offset].as_py() if ids is not None else None
        yield _Candidate(ref if own_id is None else str(own_id), ref, data)


class PathEscapes(ValueError):
    """A path cell that names a file outside the roots its source may read."""


def _cell_payload(cell: bytes | dict[str, Any] | None, base_dir: Path,
                  roots: tuple[Path, ...]) -> bytes | Path | None:
    """A bytes cell, or HF's {"bytes", "path"} struct: a path is relative to the data and must
    resolve (symbolic links and `..` included) inside one of `roots`."""
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return cell["bytes"]
        if not cell.get("path"):
            return None
        path = base_dir / cell["path"]
        real = os.path.realpath(path)
        if not any(_inside(real, os.path.realpath(root)) for root in roots):
            raise PathEscapes(f"path {cell['path']!r} resolves to {real}, outside "
                              f"{', '.join(str(r) for r in roots)}")
        return path
    return cell
