"""`ireasoner export`: a run's Solver adapter merged into a full checkpoint."""

from __future__ import annotations

from pathlib import Path

from ireasoner.policy.export import export_merged
from storage import RunStore


def checkpoint_path(store: RunStore, iteration: str) -> Path:
    """A complete checkpoint directory by iteration number or "latest"."""
    available = dict(store.checkpoints())
    if not available:
        raise FileNotFoundError(f"{store.location} has no complete checkpoint")
    if iteration == "latest":
        return available[max(available)]
    number = int(iteration)
    if number not in available:
        raise FileNotFoundError(f"{store.location} has no checkpoint of iteration {number} "
                                f"(kept: {sorted(available)})")
    return available[number]


def export_checkpoint(store: RunStore, iteration: str, out: Path) -> Path:
    base = store.manifest().get("model_path")
    if not base:
        raise FileNotFoundError(f"{store.manifest_path} records no model_path")
    return export_merged(base, checkpoint_path(store, iteration) / "adapters" / "solver", out)
