"""The artifact store: one directory per run, Parquet per stage and iteration, written atomically.
It knows nothing of the method that fills it (imports nothing from ireasoner).

Layout and guarantees are documented in docs/artifacts.md.
"""

from storage.atomic import (
    DiskFull,
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
)
from storage.compaction import compact_run
from storage.integrity import Damage
from storage.lock import RunLocked, run_lock
from storage.run import COMPLETE_MARKER, DamagedRun, NotARun, ResumeRefused, RunStore
from storage.transient import TransientStorageError, is_transient

__all__ = [
    "COMPLETE_MARKER",
    "Damage",
    "DamagedRun",
    "DiskFull",
    "NotARun",
    "ResumeRefused",
    "RunLocked",
    "RunStore",
    "TransientStorageError",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "compact_run",
    "is_transient",
    "run_lock",
]
