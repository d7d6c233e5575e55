"""Upgrading a run written by an older version, so that it resumes and reads as a new one.

Two kinds of change are migrated:
- config keys added since the run was written: `LEGACY_VALUES` gives each the value that
  reproduces what the older version did (not the new default), applied when a stored config
  lacks the key (`upgrade_config`, on every read of a run's config);
- artifact schema versions (`SCHEMA_VERSION` in pipeline.tables): `migrate_run` rewrites the
  run's files from its version to the current one, step by step, under the caller's lock.

Every rewrite is atomic and a step can be re-run after a crash (a file already in the new
shape is left alone); the manifest's schema_version is written last, so a run is either
migrated or resumes the migration.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ireasoner.pipeline.tables import QUESTIONS, SCHEMA_VERSION, UPDATES, Table, with_version
from ireasoner.pipeline.trainer import TrainerSpec
from storage import ResumeRefused, RunStore, atomic_write_parquet
from storage.compaction import CHUNK_ROW_GROUP_ROWS
from storage.layout import HOLDS_KEY, TableFolder

log = logging.getLogger(__name__)

# dotted key -> the value an older run had in effect before the key existed.
# v1 (before the published update, issue 14): one step per iteration on the summed log-probs,
# the Proposer on every question since its last update, unparsable answers out of g's entropy,
# λ's span as the absolute counts that were then the defaults.
LEGACY_VALUES: dict[str, Any] = {
    "optimization.update": "batched",
    "optimization.token_reduction": "sum",
    "proposer.train_on": "since_last_update",
    "rewards.proposer_unparsable": "excluded",
    "rewards.warmup_iterations": 750,
    "rewards.ramp_iterations": 1750,
}


def upgrade_config(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored config dict with every key it predates set to its legacy value."""
    upgraded = copy.deepcopy(stored)
    for dotted, value in LEGACY_VALUES.items():
        *sections, key = dotted.split(".")
        cursor = upgraded
        for section in sections:
            cursor = cursor.setdefault(section, {})
        cursor.setdefault(key, value)
    return upgraded


def migrate_run(store: RunStore, trainer: TrainerSpec) -> bool:
    """Bring the run's artifacts to SCHEMA_VERSION; True if anything was rewritten."""
    manifest = store.manifest()
    version = int(manifest.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise ResumeRefused(f"{store.location} was written by a newer version (artifact schema "
                            f"v{version}; this version knows up to v{SCHEMA_VERSION})")
    if version == SCHEMA_VERSION:
        return False
    for step in range(version, SCHEMA_VERSION):
        log.info("migrating %s: artifact schema v%d -> v%d", store.location, step, step + 1)
        STEPS[step](store, trainer)
    store.update_manifest(schema_version=SCHEMA_VERSION,
                          stages=manifest.get("stages") or trainer.stage_names,
                          migrated_from=manifest.get("migrated_from", version))
    return True


def _v1_to_v2(store: RunStore, trainer: TrainerSpec) -> None:
    """v2 moved the advantage from the rewards table (scoring) to the new updates table (the
    update stage), and gave each trainer a metrics table of its own columns."""
    for path in _files(store, "rewards"):
        table = pq.read_table(path)
        if "advantage" not in table.schema.names:
            continue
        for iteration, rows in _v1_updates(table).items():
            store.write_table(UPDATES.name, iteration, UPDATES.build_sparse(rows))
        _rewrite(path, table.drop_columns(["advantage"]))
    for path in _files(store, "metrics"):
        table = pq.read_table(path)
        if not table.schema.equals(trainer.metrics.schema, check_metadata=False):
            _rewrite(path, _conform(table, trainer.metrics))


def _v1_updates(rewards: pa.Table) -> dict[int, list[dict[str, Any]]]:
    """v1 recorded a Solver rollout's reward and advantage (r_sol - b): the updates rows of
    what it knew, the rest null."""
    rows: dict[int, list[dict[str, Any]]] = {}
    for r in rewards.select(["iteration", "image_index", "rollout_index", "r_sol",
                             "advantage"]).to_pylist():
        baseline = None if None in (r["r_sol"], r["advantage"]) else r["r_sol"] - r["advantage"]
        rows.setdefault(r["iteration"], []).append(dict(
            iteration=r["iteration"], role="solver", source_iteration=r["iteration"],
            image_index=r["image_index"], rollout_index=r["rollout_index"], reward=r["r_sol"],
            baseline=baseline, advantage=r["advantage"]))
    return rows


def _v2_to_v3(store: RunStore, trainer: TrainerSpec) -> None:
    """v3 (the published update, issue 14) added questions.rationale and updates.nll and
    updates.grad_norm: older files gain them as nulls."""
    for table in (QUESTIONS, UPDATES):
        for path in _files(store, table.name):
            stored = pq.read_table(path)
            if not stored.schema.equals(table.schema, check_metadata=False):
                _rewrite(path, _conform(stored, table))


STEPS: dict[int, Callable[[RunStore, TrainerSpec], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def _files(store: RunStore, table: str) -> list:
    folder = TableFolder(store.root / table)
    return [*folder.loose.values(), *(chunk for *_, chunk in folder.chunks)]


def _conform(table: pa.Table, target: Table) -> pa.Table:
    """`table`'s columns that `target` has, in its order and types; the others null."""
    columns = [table[f.name].cast(f.type) if f.name in table.schema.names
               else pa.nulls(table.num_rows, f.type) for f in target.schema]
    return pa.Table.from_arrays(columns, schema=target.schema)


def _rewrite(path, table: pa.Table) -> None:
    """Atomically, keeping a chunk's list of iterations and stamping the current version."""
    holds = (pq.read_metadata(path).metadata or {}).get(HOLDS_KEY)
    table = with_version(table)
    if holds is None:
        atomic_write_parquet(path, table)
        return
    table = table.replace_schema_metadata({**table.schema.metadata, HOLDS_KEY: holds})
    atomic_write_parquet(path, table, row_group_size=CHUNK_ROW_GROUP_ROWS)
