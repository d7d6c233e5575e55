"""data.source "hf": the images of a Hugging Face dataset, by name.

`datasets.load_dataset(name, config, split=..., streaming=...)`: a Hub id, read from the local
datasets cache when offline (HF_DATASETS_OFFLINE=1: load it once on a connected machine), or a
local dataset directory. Rows are read as Arrow batches, and `datasets` decodes an `Image`
feature only when it formats rows as Python objects, so it never decodes an image here (no
`cast_column(..., Image(decode=False))` is needed): each row's bytes (or local file) go through
the project's own sanitising `load_image`, one record at a time, and a bad image is a recorded
skip. With `streaming`, rows are read as they arrive and reading stops after `limit` rows:
the first `limit` rows of the split, in its order, are the pool, the same on every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ireasoner.config import DataConfig
from ireasoner.data.sources import (
    _BATCH_ROWS,
    DataSourceError,
    SkippedImage,
    _Candidate,
    _columns_to_read,
    _rows,
)


def hf_candidates(cfg: DataConfig) -> Iterator[_Candidate | SkippedImage]:
    """The rows of the configured split, undecoded, in order; at most `data.hf.limit`."""
    import datasets  # heavy, and only this source needs it

    dataset = _load(datasets, cfg)
    if dataset.features is None:
        raise DataSourceError(f"{_describe(cfg)} declares no features, so its image column "
                              "cannot be checked: set data.hf.streaming to false")
    schema = dataset.features.arrow_schema
    columns = _columns_to_read(schema, cfg.image_column, _describe(cfg))
    dataset = dataset.select_columns(columns)
    if cfg.hf.limit is not None:
        dataset = (dataset.take(cfg.hf.limit) if cfg.hf.streaming
                   else dataset.select(range(min(cfg.hf.limit, len(dataset)))))
    prefix = f"{cfg.hf.name}:{cfg.hf.config or 'default'}:{cfg.hf.split}"
    start = 0
    for batch in dataset.with_format("arrow").iter(batch_size=_BATCH_ROWS):
        # A cell without bytes names a file: absolute in the local cache, or local to the data.
        yield from _rows(batch, cfg.image_column, prefix, start, Path(str(cfg.hf.name)))
        start += batch.num_rows


def _load(datasets: Any, cfg: DataConfig) -> Any:
    hf = cfg.hf
    try:
        return datasets.load_dataset(hf.name, hf.config, split=hf.split, streaming=hf.streaming,
                                     cache_dir=hf.cache_dir)
    except ConnectionError as err:  # offline, and not in the cache under this name
        raise DataSourceError(
            f"data.hf.name {hf.name!r} is not in the local datasets cache "
            f"({hf.cache_dir or datasets.config.HF_DATASETS_CACHE}) and the Hub cannot be "
            f"reached ({err}); load it once on a connected machine (docs/data.md)") from err
    except FileNotFoundError as err:
        raise DataSourceError(f"data.hf.name {hf.name!r}: no such dataset ({err})") from err
    except ValueError as err:  # datasets names the configs or splits there are
        key = "data.hf.split" if "split" in str(err).lower() else "data.hf.config"
        raise DataSourceError(f"{_describe(cfg)}: check {key} ({err})") from err


def _describe(cfg: DataConfig) -> str:
    config = f", config {cfg.hf.config!r}" if cfg.hf.config else ""
    return f"HF dataset {cfg.hf.name!r}{config}, split {cfg.hf.split!r}"
