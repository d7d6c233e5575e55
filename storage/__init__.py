"""The artifact store: one directory per run, Parquet per stage and iteration, written atomically.

Schemas and layout are documented in docs/artifacts.md.
"""

from storage.atomic import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_parquet
from storage.compaction import compact_run
from storage.lock import RunLocked, run_lock
from storage.run import ConfigMismatch, RunStore
from storage.schemas import SCHEMA_VERSION, TABLES

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "ConfigMismatch",
    "RunLocked",
    "RunStore",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "compact_run",
    "run_lock",
]
