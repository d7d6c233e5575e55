"""Compaction: the per-iteration files of completed iterations merged into chunk files (layout
in storage.layout), so that a whole-run query opens tens of files instead of thousands.

Rows are copied unchanged (each keeps its `iteration`), so every reader of the store reads the
same rows before and after. A chunk is written atomically before the files it holds are removed:
a crash in between leaves shadowed files, which readers skip and the next compaction removes.
The caller holds the run's lock (storage.lock), as training does.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage.atomic import atomic_write_parquet
from storage.layout import TableFolder, chunk_file, chunk_metadata
from storage.run import RunStore

log = logging.getLogger(__name__)

# Rows stay in iteration order, so a filter on `iteration` skips other iterations' row groups.
# Whole-table scans pay per row group (one per iteration made them ~20x slower), so groups are
# large: a paper-sized chunk of rollouts (100 iterations x 5) is one, and reading one iteration
# out of it takes ~3 ms (benchmarks/pipeline_queries.py).
CHUNK_ROW_GROUP_ROWS = 1024


def compact_run(store: RunStore, every: int) -> list[Path]:
    """Merge each full block of `every` completed iterations (1..every, every+1..2·every, ...)
    of every table into one chunk; returns the chunks written. First removes the files an
    interrupted compaction left shadowed; with every = 0 that is all it does."""
    drop_shadowed(store)
    if not every:
        return []
    done = store.completed_iterations()  # the stage markers say what is complete
    full = done - done % every           # iterations 1..full lie in full blocks
    written = []
    names = store.tables()
    for number, name in enumerate(names, start=1):
        folder = store.table_folder(name)
        blocks: dict[int, list[int]] = defaultdict(list)
        for iteration in sorted(folder.loose):
            if 1 <= iteration <= full:   # iteration 0 is data loading, not a trained iteration
                blocks[(iteration - 1) // every].append(iteration)
        written += [compact_files(folder, iterations) for iterations in blocks.values()]
        log.info("compact %d/%d %s: %d chunk(s) of %d iterations", number, len(names), name,
                 len(blocks), every)
    return written


def compact_files(folder: TableFolder, iterations: list[int]) -> Path:
    """One chunk of these iterations' files (ascending, none shadowed), then the files go."""
    tables = []
    for iteration in iterations:
        table = pq.read_table(folder.loose[iteration])
        bounds = pc.min_max(table["iteration"]).as_py()
        if table.num_rows and bounds != {"min": iteration, "max": iteration}:
            raise ValueError(f"{folder.loose[iteration]} holds rows of another iteration")
        tables.append(table)
    merged = pa.concat_tables(tables)
    merged = merged.replace_schema_metadata(chunk_metadata(merged.schema, iterations))
    chunk = atomic_write_parquet(chunk_file(folder.folder, iterations[0], iterations[-1]),
                                 merged, row_group_size=CHUNK_ROW_GROUP_ROWS)
    for iteration in iterations:
        folder.loose[iteration].unlink()
    return chunk


def drop_shadowed(store: RunStore) -> None:
    """Remove the per-iteration files that a complete chunk also holds."""
    for name in store.tables():
        for path in store.table_folder(name).shadowed():
            path.unlink()
