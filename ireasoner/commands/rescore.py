"""`ireasoner rescore`: every iteration's rewards and diagnostics of an iReasoner run recomputed
from the stored rollouts under another reward config, with the exported tokenizer and embedding
table only (the score stage's own code and files: no model). Advantages are not rescored: they
are the update's (the updates table), which used the rewards the run trained on.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ireasoner.config import (
    ConfigError,
    config_from_dict,
    deep_merge,
    diff_configs,
    parse_override,
    read_yaml,
)
from ireasoner.inspect.queries import require_run
from ireasoner.pipeline.run import run_config
from ireasoner.pipeline.tables import QUESTIONS, ROLLOUTS
from ireasoner.trainers.ireasoner.score import score_iteration, stored_embedder
from storage import RunStore, atomic_write_json

COMPARED = {
    "rewards": ("r_ans", "r_step", "r_sol"),
    "groups": ("entropy", "density", "group_fraction", "proposer_reward", "mean_step_similarity",
               "valid_positions"),
}


def rescore_run(run: str | Path, overlays: list[str], overrides: list[str],
                out: str | Path) -> str:
    """Writes `out/{steps,rewards,groups}/<iteration>.parquet`; returns a comparison table.
    `run` and `out` may be URLs (storage.remote); only the tables and embeddings are fetched."""
    source = RunStore(run).pull(checkpoints=False)
    require_run(source)
    original = run_config(source)
    if original.trainer.kind != "ireasoner":
        raise ConfigError(f"{source.location} was trained by trainer.kind "
                          f"{original.trainer.kind!r}: only iReasoner rewards can be rescored")
    merged = original.to_dict()
    for overlay in overlays:
        merged = deep_merge(merged, read_yaml(overlay))
    for item in overrides:
        merged = deep_merge(merged, parse_override(item))
    config = config_from_dict(merged)
    not_rewards = [k for k in diff_configs(original.to_dict(), config.to_dict())
                   if not k.startswith("rewards.")]
    if not_rewards:
        raise ValueError(f"rescoring can only change rewards.* keys; also changed: {not_rewards}")
    iterations = list(range(1, source.completed_iterations() + 1))
    if not iterations:
        raise FileNotFoundError(f"{run} has no completed iteration to rescore")

    embedder = stored_embedder(source, config.rewards.step_tokens)
    target = RunStore(out)
    for iteration in iterations:
        scored = score_iteration(source.read_table(QUESTIONS.name, iteration),
                                 source.read_table(ROLLOUTS.name, iteration), embedder,
                                 config.rewards, iteration, config.schedule.iterations)
        for name in ("steps", "rewards", "groups"):
            target.write_table(name, iteration, getattr(scored, name))
    atomic_write_json(target.manifest_path, {
        "kind": "rescored",
        "source_run": source.location if source.remote else str(Path(run).resolve()),
        "iterations": len(iterations), "rewards": config.rewards.model_dump(mode="json"),
        "changed": {k: list(v) for k, v in diff_configs(original.to_dict(), config.to_dict()).items()},
    })
    target.push()
    return compare_sets(source, target)


def compare_sets(before: RunStore, after: RunStore) -> str:
    """Means before/after and the largest per-row change of each reward and diagnostic."""
    lines = [f"{'table.column':<32}{'before':>10}{'after':>10}{'max |diff|':>12}"]
    for table, columns in COMPARED.items():
        keys = ["iteration", "image_index"] + (["rollout_index"] if table == "rewards" else [])
        old = before.scan(table).select(keys + list(columns)).collect()
        new = after.scan(table).select(keys + list(columns)).collect()
        joined = old.join(new, on=keys, suffix="_new")
        for column in columns:
            a, b = joined[column].cast(pl.Float64), joined[f"{column}_new"].cast(pl.Float64)
            diff = (a - b).abs().max()
            lines.append(f"{table + '.' + column:<32}{_fmt(a.mean())}{_fmt(b.mean())}"
                         f"{_fmt(diff, 12)}")
    return "\n".join(lines)


def _fmt(value, width: int = 10) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.4f}"
