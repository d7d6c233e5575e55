"""What a trainer is to the pipeline: its stages, its tables and metrics columns, and the role
trainers (optimizer, baseline, β) of its policy. Each trainer declares one `TrainerSpec` in its
folder (`ireasoner/trainers/<kind>/`); `ireasoner.trainers.registry` maps `trainer.kind` to it.
The plumbing (store, resume, checkpoints, publishing) never asks which trainer runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from ireasoner.pipeline.tables import COMMON_TABLES, Table, metrics_table
from ireasoner.policy.adapters import ROLES
from ireasoner.policy.update import RoleTrainer

if TYPE_CHECKING:
    from ireasoner.pipeline.context import RunContext

StageFn = Callable[["RunContext", int], dict]


@dataclass(frozen=True)
class TrainerSpec:
    kind: str
    # In order; the last one completes an iteration and writes the checkpoint resume restores.
    stages: tuple[tuple[str, StageFn], ...]
    # The role trainers of the policy, one per adapter role (policy.adapters.ROLES), built on
    # first use by the run context: (context) -> {role: RoleTrainer}.
    make_trainers: Callable[[RunContext], dict[str, RoleTrainer]]
    # Its per-rollout rewards: keyed like the rollouts table, with an `answer` column (the
    # normalised answer, null when unparsable). Shown after each iteration, counted in metrics.
    rollout_rewards: Table
    tables: tuple[Table, ...] = ()  # its own, beside COMMON_TABLES (rollout_rewards among them)
    metrics_fields: tuple[pa.Field, ...] = ()  # its own columns of the metrics row
    metrics: Table = field(init=False)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError(f"trainer {self.kind!r} has no stages")
        names = self.stage_names
        if len(set(names)) != len(names) or {"prepare", "evaluate"} & set(names):
            raise ValueError(f"trainer {self.kind!r}: stage names must be unique and not "
                             f"'prepare' or 'evaluate' (the pipeline's own): {names}")
        object.__setattr__(self, "metrics", metrics_table(self.metrics_fields, names))

    @property
    def stage_names(self) -> list[str]:
        return [name for name, _ in self.stages]

    def all_tables(self) -> Sequence[Table]:
        return (*COMMON_TABLES, *self.tables, self.metrics)


def reinforce_trainers(ctx: RunContext) -> dict[str, RoleTrainer]:
    """A KL-regularised REINFORCE trainer (policy.update) for each adapter role."""
    cfg = ctx.config
    return {role: RoleTrainer(ctx.policy, ctx.backbone.processor, role, cfg.optimization, cfg.kl)
            for role in ROLES}
