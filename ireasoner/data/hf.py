"""data.source "hf": the images of a Hugging Face dataset, by name.

`datasets.load_dataset(name, config, split=..., streaming=...)`: a Hub id, read from the local
datasets cache when offline (HF_DATASETS_OFFLINE=1: load it once on a connected machine), or a
local dataset directory. Rows are read as Arrow batches, and `datasets` decodes an `Image`
feature only when it formats rows as Python objects, so it never decodes an image here (no
`cast_column(..., Image(decode=False))` is needed): `ireasoner.data.sources` turns each row's
bytes (or local file) into a record with the project's own sanitising `load_image`, and a bad
image is a recorded skip. With `streaming`, rows are read as they arrive and reading stops after
`limit` rows: the first `limit` rows of the split, in its order, are the pool, the same on every
run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ireasoner.config import DataConfig
from ireasoner.data.errors import DataSourceError


@dataclass(frozen=True)
class HFSplit:
    dataset: Any  # a datasets.Dataset or IterableDataset
    schema: pa.Schema
    prefix: str  # of the rows' references: "<name>:<config>:<split>"
    description: str
    limit: int | None
    streaming: bool

    def batches(self, columns: list[str], rows: int) -> Iterator[pa.Table]:
        """`columns` of the first `limit` rows (all without one), in order, as Arrow."""
        dataset = self.dataset.select_columns(columns)
        if self.limit is not None:
            dataset = (dataset.take(self.limit) if self.streaming
                       else dataset.select(range(min(self.limit, len(dataset)))))
        yield from dataset.with_format("arrow").iter(batch_size=rows)


def open_hf_split(cfg: DataConfig) -> HFSplit:
    """The configured split, loaded (or opened as a stream); nothing is read yet."""
    import datasets  # heavy, and only this source needs it

    hf = cfg.hf
    description = (f"HF dataset {hf.name!r}" + (f", config {hf.config!r}" if hf.config else "")
                   + f", split {hf.split!r}")
    try:
        dataset = datasets.load_dataset(hf.name, hf.config, split=hf.split,
                                        streaming=hf.streaming, cache_dir=hf.cache_dir)
    except ConnectionError as err:  # offline, and not in the cache under this name
        raise DataSourceError(
            f"data.hf.name {hf.name!r} is not in the local datasets cache "
            f"({hf.cache_dir or datasets.config.HF_DATASETS_CACHE}) and the Hub cannot be "
            f"reached ({err}); load it once on a connected machine (docs/data.md)") from err
    except FileNotFoundError as err:
        raise DataSourceError(f"data.hf.name {hf.name!r}: no such dataset ({err})") from err
    except ValueError as err:  # datasets names the configs or splits there are
        key = "data.hf.split" if "split" in str(err).lower() else "data.hf.config"
        raise DataSourceError(f"{description}: check {key} ({err})") from err
    if dataset.features is None:
        raise DataSourceError(f"{description} declares no features, so its image column cannot "
                              "be checked: set data.hf.streaming to false")
    return HFSplit(dataset, dataset.features.arrow_schema,
                   f"{hf.name}:{hf.config or 'default'}:{hf.split}", description, hf.limit,
                   hf.streaming)
