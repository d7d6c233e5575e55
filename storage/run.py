"""A run directory: manifest, per-iteration tables, stage markers, checkpoints.

    <run>/manifest.json                 config, its fingerprint, code version, model path
    <run>/LOCK                          held by the training process (storage.lock)
    <run>/<table>/<iteration:06d>.parquet   questions, rollouts, steps, rewards, groups, metrics,
                                         skips (schemas in storage.schemas)
    <run>/stages/<iteration:06d>/<stage>.json   written last: the stage is complete
    <run>/checkpoints/iter-<iteration:06d>/     policy state after that iteration's update
    <run>/embeddings/                   tokenizer + input-embedding table, for offline rescoring

Polars reads a whole table in one call: `pl.read_parquet(f"{run}/rewards/*.parquet")`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ireasoner import __version__
from ireasoner.config import Config, config_from_dict, training_changes
from storage.atomic import atomic_write_json, atomic_write_parquet, cleanup_partial
from storage.schemas import SCHEMA_VERSION, TABLES

STAGES = ("propose", "solve", "score", "update")
COMPLETE_MARKER = "COMPLETE"


class ConfigMismatch(ValueError):
    """Resuming with a config that would train differently."""


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ---- the manifest -------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        if not self.exists():
            raise FileNotFoundError(f"{self.root} is not a run directory (no manifest.json)")
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def config(self) -> Config:
        return config_from_dict(self.manifest()["config"])

    def open(self, config: Config, *, resume: bool) -> RunStore:
        """Start a new run here, or resume the one here if its training config matches."""
        if self.exists():
            if not resume:
                raise FileExistsError(
                    f"{self.root} already holds a run; pass --resume to continue it, or choose "
                    "another --run-dir to start a new one")
            self._check_resumable(config)
            cleanup_partial(self.root)
            manifest = self.manifest()
            manifest["config"] = config.to_dict()  # resume-neutral keys may have changed
            manifest["resumed_at"] = manifest.get("resumed_at", []) + [_now()]
            atomic_write_json(self.manifest_path, manifest)
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, {
            "schema_version": SCHEMA_VERSION,
            "config": config.to_dict(),
            "config_fingerprint": config.fingerprint(),
            "code_version": code_version(),
            "created_at": _now(),
        })
        return self

    def _check_resumable(self, config: Config) -> None:
        old = self.manifest()
        if old.get("schema_version") != SCHEMA_VERSION:
            raise ConfigMismatch(
                f"{self.root} was written with artifact schema v{old.get('schema_version')}, "
                f"this code writes v{SCHEMA_VERSION}; start a new run directory")
        changed = training_changes(old["config"], config.to_dict())
        if changed:
            lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise ConfigMismatch(
                f"cannot resume {self.root}: the config changes what is trained:\n{lines}\n"
                "Resume with the original config, or start a new run with another --run-dir.")

    def update_manifest(self, **fields: Any) -> None:
        manifest = self.manifest()
        manifest.update(fields)
        atomic_write_json(self.manifest_path, manifest)

    # ---- tables -------------------------------------------------------------------------
    def table_path(self, name: str, iteration: int) -> Path:
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        return self.root / name / f"{iteration:06d}.parquet"

    def write_table(self, name: str, iteration: int, table: pa.Table) -> Path:
        expected = TABLES[name]
        if not table.schema.equals(expected, check_metadata=False):
            raise ValueError(f"table {name!r} does not match its schema:\n{table.schema}")
        return atomic_write_parquet(self.table_path(name, iteration), table)

    def read_table(self, name: str, iteration: int) -> pa.Table:
        return pq.read_table(self.table_path(name, iteration))

    def has_table(self, name: str, iteration: int) -> bool:
        return self.table_path(name, iteration).is_file()

    def scan(self, name: str) -> pl.LazyFrame:
        """All iterations of a table, lazily (empty frame with the schema when none yet)."""
        files = sorted((self.root / name).glob("*.parquet"))
        if not files:
            return pl.from_arrow(TABLES[name].empty_table()).lazy()
        return pl.scan_parquet([str(f) for f in files])

    # ---- stages -------------------------------------------------------------------------
    def _marker(self, iteration: int, stage: str) -> Path:
        return self.root / "stages" / f"{iteration:06d}" / f"{stage}.json"

    def stage_done(self, iteration: int, stage: str) -> bool:
        return self._marker(iteration, stage).is_file()

    def stage_info(self, iteration: int, stage: str) -> dict[str, Any]:
        return json.loads(self._marker(iteration, stage).read_text(encoding="utf-8"))

    def mark_done(self, iteration: int, stage: str, info: dict[str, Any]) -> None:
        """Written after every artifact of the stage: from here on the stage is complete."""
        atomic_write_json(self._marker(iteration, stage), {"finished_at": _now(), **info})

    def completed_iterations(self) -> int:
        """The number of leading iterations whose last stage is complete."""
        done = 0
        while self.stage_done(done + 1, STAGES[-1]):
            done += 1
        return done

    # ---- checkpoints --------------------------------------------------------------------
    def checkpoint_dir(self, iteration: int) -> Path:
        return self.root / "checkpoints" / f"iter-{iteration:06d}"

    def checkpoints(self) -> list[tuple[int, Path]]:
        found = []
        for path in sorted((self.root / "checkpoints").glob("iter-*")):
            if (path / COMPLETE_MARKER).is_file():
                found.append((int(path.name.removeprefix("iter-")), path))
        return found

    def prune_checkpoints(self, keep_every: int, latest: int) -> None:
        """Drop older checkpoints, keeping the latest and (if set) every `keep_every`-th."""
        for iteration, path in self.checkpoints():
            if iteration == latest or (keep_every and iteration % keep_every == 0):
                continue
            shutil.rmtree(path)

    @property
    def embeddings_dir(self) -> Path:
        return self.root / "embeddings"


def code_version() -> str:
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"],
                               capture_output=True, text=True, check=True, timeout=5).stdout
        return f"{__version__}+g{sha}{'.dirty' if dirty.strip() else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
