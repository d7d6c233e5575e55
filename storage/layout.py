"""Which files of a table's folder hold which iterations.

    <table>/<iteration:06d>.parquet          one iteration, as its stage wrote it
    <table>/<first:06d>-<last:06d>.parquet   a chunk (storage.compaction): completed iterations
                                             first..last, one row group each; the file's
                                             metadata lists the iterations it holds

Both match `<table>/*.parquet`, and names sort by first iteration. Compaction writes a chunk
before it removes the files the chunk holds; a per-iteration file whose iteration a chunk holds
is *shadowed*, and the readers here skip it, so no row is read twice even in between.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Chunk metadata: the JSON list of iterations the chunk holds. The name alone cannot say it: a
# table may have no file in some iterations (skips, IVR-R1's tables).
HOLDS_KEY = b"ireasoner.iterations"
_FILE_NAME = re.compile(r"^\d{6}(-\d{6})?\.parquet$")


def is_table_file(path: Path) -> bool:
    """An iteration's file or a chunk: what makes a run's folder a table."""
    return _FILE_NAME.match(path.name) is not None


def iteration_file(folder: Path, iteration: int) -> Path:
    return folder / f"{iteration:06d}.parquet"


def chunk_file(folder: Path, first: int, last: int) -> Path:
    return folder / f"{first:06d}-{last:06d}.parquet"


def chunk_metadata(schema: pa.Schema, iterations: list[int]) -> dict[bytes, bytes]:
    return {**(schema.metadata or {}), HOLDS_KEY: json.dumps(iterations).encode()}


class TableFolder:
    """One table's folder, listed once when built."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.loose: dict[int, Path] = {}                 # iteration -> its own file
        self.chunks: list[tuple[int, int, Path]] = []    # (first, last, chunk), ascending
        self._holds: dict[Path, frozenset[int]] = {}
        for path in self.folder.glob("*.parquet") if self.folder.is_dir() else ():
            if not is_table_file(path):
                continue
            first, _, last = path.stem.partition("-")
            if last:
                self.chunks.append((int(first), int(last), path))
            else:
                self.loose[int(first)] = path
        self.chunks.sort()

    def holds(self, chunk: Path) -> frozenset[int]:
        if chunk not in self._holds:
            metadata = pq.read_metadata(chunk).metadata
            self._holds[chunk] = frozenset(json.loads(metadata[HOLDS_KEY]))
        return self._holds[chunk]

    def chunk_of(self, iteration: int) -> Path | None:
        """The chunk holding `iteration`; only a chunk whose span contains it is opened."""
        for first, last, chunk in self.chunks:
            if first <= iteration <= last and iteration in self.holds(chunk):
                return chunk
        return None

    def shadowed(self) -> list[Path]:
        """Per-iteration files a chunk also holds (left by an interrupted compaction)."""
        return [path for iteration, path in sorted(self.loose.items())
                if self.chunk_of(iteration) is not None]

    def iterations(self) -> list[int]:
        held = set().union(*(self.holds(chunk) for *_, chunk in self.chunks))
        return sorted(held | set(self.loose))

    def files(self, iterations: Iterable[int] | None = None) -> list[Path]:
        """The files holding `iterations` (default: all), each iteration in exactly one."""
        if iterations is None:
            chosen = {chunk for *_, chunk in self.chunks}
            chosen |= {path for it, path in self.loose.items() if self.chunk_of(it) is None}
        else:
            chosen = {self.chunk_of(it) or self.loose.get(it) for it in iterations} - {None}
        return sorted(chosen)

    def read_compacted(self, iteration: int) -> pa.Table:
        """One iteration's rows out of its chunk: the filter skips the other iterations' row
        groups by their statistics, so only this iteration's rows are decoded."""
        chunk = self.chunk_of(iteration)
        if chunk is None:
            raise FileNotFoundError(f"no file of {self.folder} holds iteration {iteration}")
        table = pq.read_table(chunk, filters=[("iteration", "=", iteration)])
        metadata = {k: v for k, v in table.schema.metadata.items() if k != HOLDS_KEY}
        return table.replace_schema_metadata(metadata)
