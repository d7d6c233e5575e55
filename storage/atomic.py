"""Atomic writes: a reader (or a resumed run) sees a whole file or none, never half of one.

Each write goes to a temporary name in the same directory, is flushed to disk, then renamed over
the final name (rename is atomic on POSIX filesystems).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: Path, payload: Any) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def atomic_write_parquet(path: Path, table: pa.Table, row_group_size: int | None = None) -> Path:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            # Two renames keep the window where neither exists as short as possible; a crash in
            # it leaves the old copy under .old, which `cleanup_partial` removes.
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cleanup_partial(root: Path) -> int:
    """Remove temporaries a killed process left behind; returns how many were removed."""
    removed = 0
    for leftover in Path(root).rglob(".*.tmp"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
        removed += 1
    for leftover in Path(root).rglob(".*.old"):
        shutil.rmtree(leftover)
        removed += 1
    return removed
