"""`ireasoner migrate RUN`: upgrade a run written by an older version in place (training with
--resume does the same before it continues)."""

from __future__ import annotations

from ireasoner.pipeline.migrations import migrate_run
from ireasoner.pipeline.run import run_config
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore


def migrate_command(run: str, lease_seconds: float = 60.0) -> str:
    store = RunStore(run).pull()
    trainer = trainer_spec(run_config(store).trainer.kind)
    with store.lock(lease_seconds):  # not while a training writes to it
        store.pull()
        version = store.manifest().get("schema_version", 1)
        changed = migrate_run(store, trainer)
        store.push()
    if not changed:
        return f"{store.location}: already at artifact schema v{version}"
    return (f"{store.location}: migrated from artifact schema v{version} to "
            f"v{store.manifest()['schema_version']}")
