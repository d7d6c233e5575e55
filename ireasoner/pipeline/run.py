"""Opening a run for training: what the manifest records, what a resume must agree with, and
the config a resumed run continues with. The store (storage.run) writes the manifest; this
module decides its contents.

On resume the run's own config is the starting point: a key the user's config leaves unset
keeps the run's value, a key it sets must not change what is trained (config.RESUME_NEUTRAL_KEYS
may change). A run written by an older version is migrated first (ireasoner.pipeline.migrations);
before that, the files of its completed stages are checked (storage.integrity).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ireasoner import __version__
from ireasoner.config import (
    LAMBDA_SPAN,
    Config,
    config_from_dict,
    deep_merge,
    training_changes,
)
from ireasoner.pipeline.migrations import migrate_run, upgrade_config
from ireasoner.pipeline.tables import SCHEMA_VERSION
from ireasoner.pipeline.trainer import TrainerSpec
from storage import ResumeRefused, RunStore


def open_run(store: RunStore, config: Config, find_trainer: Callable[[str], TrainerSpec], *,
             resume: bool) -> tuple[Config, TrainerSpec]:
    """Create the run, or resume it; returns the config the run trains with and its trainer
    (`find_trainer`: trainer.kind -> spec, the registry). The caller holds the run's lock."""
    store.pull()
    if store.exists() and resume:
        store.require_intact()  # a damaged file is named here, not met as a traceback later
        migrate_run(store, find_trainer(run_config(store).trainer.kind))
        config = resumed_config(store, config)
    trainer = find_trainer(config.trainer.kind)
    fields = {
        "schema_version": SCHEMA_VERSION,
        "trainer": trainer.kind,
        "stages": trainer.stage_names,
        "config": config.to_dict(),
        "config_fingerprint": config.fingerprint(),
        "code_version": code_version(),
    }

    def on_resume(manifest: dict[str, Any]) -> dict[str, Any]:
        if manifest.get("stages") != trainer.stage_names:
            raise ResumeRefused(
                f"cannot resume {store.location}: it was trained with the stages "
                f"{manifest.get('stages')}, trainer {trainer.kind!r} runs {trainer.stage_names}")
        # The resume-neutral keys may have changed (a longer schedule, another evaluation).
        return {"config": config.to_dict()}

    store.open(fields, resume=resume, on_resume=on_resume)
    return config, trainer


def resumed_config(store: RunStore, requested: Config) -> Config:
    """The run's config with the keys `requested` sets explicitly; refused when one of them
    would make the run train differently."""
    stored = run_config(store)
    explicit = requested.model_dump(mode="json", exclude_unset=True)
    merged = config_from_dict(deep_merge(stored.to_dict(), explicit), stored=True)
    changed = training_changes(stored.to_dict(), merged.to_dict())
    if changed:
        lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        hint = ""
        if LAMBDA_SPAN in changed:
            warm, ramp = changed[LAMBDA_SPAN][0]
            hint = (f"λ's warm-up and ramp are fractions of schedule.iterations: keep the run's "
                    f"span with --set rewards.warmup_iterations={warm} "
                    f"--set rewards.ramp_iterations={ramp}\n")
        raise ResumeRefused(
            f"cannot resume {store.location}: the config changes what is trained:\n{lines}\n"
            f"{hint}Resume with the original config, or start a new run with another "
            "--run-dir.")
    return merged


def run_config(store: RunStore) -> Config:
    """The config the run was trained with, read from its manifest (written by any version)."""
    return config_from_dict(upgrade_config(store.manifest()["config"]), stored=True)


def require_current(store: RunStore) -> None:
    """Readers of a run's tables call this first: a run written with an older artifact schema
    is named, with the command that upgrades it."""
    version = store.manifest().get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResumeRefused(
            f"{store.location} holds artifacts of schema v{version}; this version reads "
            f"v{SCHEMA_VERSION}. Upgrade it in place with `ireasoner migrate {store.location}` "
            "(training with --resume does it too).")


def code_version() -> str:
    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"],
                               capture_output=True, text=True, check=True, timeout=5).stdout
        return f"{__version__}+g{sha}{'.dirty' if dirty.strip() else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__
