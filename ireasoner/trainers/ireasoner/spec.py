"""The iReasoner trainer as the pipeline sees it: stages, tables, metrics, role trainers."""

from __future__ import annotations

from ireasoner.pipeline.propose import propose
from ireasoner.pipeline.solve import solve
from ireasoner.pipeline.trainer import TrainerSpec, reinforce_trainers
from ireasoner.trainers.ireasoner.score import score
from ireasoner.trainers.ireasoner.tables import GROUPS, METRICS_FIELDS, REWARDS, STEPS
from ireasoner.trainers.ireasoner.update import update

SPEC = TrainerSpec(
    kind="ireasoner",
    stages=(("propose", propose), ("solve", solve), ("score", score), ("update", update)),
    make_trainers=reinforce_trainers,
    rollout_rewards=REWARDS,
    tables=(STEPS, REWARDS, GROUPS),
    metrics_fields=METRICS_FIELDS,
)
