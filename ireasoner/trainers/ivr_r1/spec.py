"""The IVR-R1 trainer as the pipeline sees it: stages, tables, metrics, role trainers."""

from __future__ import annotations

from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.solve import solve
from ireasoner.pipeline.trainer import TrainerSpec, reinforce_trainers
from ireasoner.policy.grpo import GRPOTrainer
from ireasoner.policy.update import RoleTrainer
from ireasoner.trainers.ivr_r1 import stages
from ireasoner.trainers.ivr_r1.tables import CRITIQUES, IVR_REWARDS, METRICS_FIELDS, RECTIFIED
from ireasoner.trainers.ivr_r1.update import update


def role_trainers(ctx: RunContext) -> dict[str, RoleTrainer]:
    """GRPO on the Solver; the Proposer (pseudo labels) keeps a plain trainer, never updated,
    so both adapters are saved and restored alike."""
    cfg = ctx.config
    trainers = reinforce_trainers(ctx)
    trainers["solver"] = GRPOTrainer(ctx.policy, ctx.backbone.processor, "solver",
                                     cfg.optimization, cfg.kl, cfg.ivr)
    return trainers


SPEC = TrainerSpec(
    kind="ivr_r1",
    stages=(("propose", stages.propose), ("solve", solve), ("score", stages.score),
            ("localise", stages.localise), ("rectify", stages.rectify), ("update", update)),
    make_trainers=role_trainers,
    rollout_rewards=IVR_REWARDS,
    tables=(IVR_REWARDS, CRITIQUES, RECTIFIED),
    metrics_fields=METRICS_FIELDS,
)
