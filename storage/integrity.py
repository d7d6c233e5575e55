"""Is a run's file still the one its stage wrote? Records taken at commit time, checks on resume.

When a stage completes, its marker records each file the stage wrote: its size, sha256 and (for
a table) row count. A resume compares sizes against the records, which finds a truncated or
extended file with one `stat` each, and reads the footers and headers of files nobody recorded
(compaction's chunks, runs written before the records existed); `full` adds the sha256 of
every recorded file, which finds a flipped byte too (what `ireasoner repair` does).

Structure checked without reading the data: a Parquet file ends in its footer and "PAR1"; a
safetensors file is an 8-byte header length, a JSON header, then exactly the bytes its tensors'
offsets cover.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class Damage:
    """A damaged file and the stage whose marker vouches for it (None: not known)."""

    path: Path          # relative to the run's root
    problem: str        # "is truncated (10 of 2,048 bytes)", ...
    iteration: int
    stage: str | None


def file_record(path: Path, rows: int | None = None) -> dict[str, Any]:
    """What a stage marker records of a file it vouches for."""
    record: dict[str, Any] = {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
    if rows is not None:
        record["rows"] = rows
    return record


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, record: dict[str, Any] | None = None, *, full: bool = False
               ) -> str | None:
    """What is wrong with `path` (None: nothing found). Against `record` its size (and with
    `full` its sha256); with no record, or with `full`, its structure."""
    if not path.is_file():
        return "is missing"
    size = path.stat().st_size
    if record is not None:
        expected = record["bytes"]
        if size < expected:
            return f"is truncated ({size:,} of {expected:,} bytes)"
        if size != expected:
            return f"has {size:,} bytes where {expected:,} were written"
        if full and sha256_of(path) != record["sha256"]:
            return "is corrupt (its sha256 differs from the one recorded when it was written)"
        if not full:
            return None
    return check_structure(path, size, None if record is None else record.get("rows"))


def check_structure(path: Path, size: int, rows: int | None = None) -> str | None:
    try:
        if path.suffix == ".parquet":
            return _check_parquet(path, size, rows)
        if path.suffix == ".safetensors":
            return _check_safetensors(path, size)
        if path.suffix == ".json":
            json.loads(path.read_bytes())
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        return f"is corrupt ({type(err).__name__}: {err})"
    return None


def _check_parquet(path: Path, size: int, rows: int | None) -> str | None:
    with open(path, "rb") as handle:
        head = handle.read(4)
        handle.seek(max(size - 8, 0))
        tail = handle.read(8)
    if size < 12 or head != _PARQUET_MAGIC or tail[4:] != _PARQUET_MAGIC:
        return f"is truncated or not Parquet ({size:,} bytes, no Parquet footer at its end)"
    footer = struct.unpack("<I", tail[:4])[0]
    if footer + 12 > size:
        return f"is truncated (its footer claims {footer:,} bytes of a {size:,}-byte file)"
    metadata = pq.read_metadata(path)
    if rows is not None and metadata.num_rows != rows:
        return f"holds {metadata.num_rows} rows where {rows} were written"
    return None


def _check_safetensors(path: Path, size: int) -> str | None:
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return f"is truncated ({size} bytes: no safetensors header)"
        length = struct.unpack("<Q", prefix)[0]
        if length + 8 > size:
            return (f"is truncated (its header claims {length:,} bytes of a {size:,}-byte "
                    "file)")
        header = json.loads(handle.read(length))
    end = max((entry["data_offsets"][1] for key, entry in header.items()
               if key != "__metadata__"), default=0)
    if 8 + length + end != size:
        return (f"is truncated ({size:,} bytes where its header's tensors need "
                f"{8 + length + end:,})")
    return None
