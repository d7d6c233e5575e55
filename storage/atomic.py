"""Atomic writes: a reader (or a resumed run) sees a whole file or none, never half of one.

Each write goes to a temporary name in the same directory, is flushed to disk, then renamed over
the final name (rename is atomic on POSIX filesystems). A write that fails removes its temporary;
one that fails because the disk (or the user's quota) is full raises DiskFull, naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How a library that is not Python reports them: Rust's io::Error (safetensors) as
# "... { code: 28, kind: StorageFull ...}", Arrow's as "... error 28 ... No space left on device".
_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "StorageFull",
              "QuotaExceeded", "FilesystemQuotaExceeded")


class DiskFull(OSError):
    """A write into the run failed because its disk or quota is full. Not transient (retrying
    at once fails the same way) and nothing partial is left; once space is freed, the run
    resumes with `--resume`."""

    def __str__(self) -> str:  # the message alone: the CLI prints it as one line
        return self.strerror or super().__str__()


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC / EDQUOT anywhere in the chain, as an OSError or in a native library's message."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            return True
        if any(text in str(error) for text in _FULL_TEXT):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def disk_full_named(path: Path) -> Iterator[None]:
    """Re-raise a full disk while writing `path` as one DiskFull line that says what to do."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as err:
        if not is_disk_full(err):
            raise
        raise DiskFull(errno.ENOSPC, f"cannot write {path}: the disk is full (or the quota is "
                       "spent); nothing partial was kept. Free space, then continue with "
                       "`ireasoner train --resume`") from err


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    with disk_full_named(path):
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
    with disk_full_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        with disk_full_named(path):
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
