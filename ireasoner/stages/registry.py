"""The stages of one iteration, per trainer. The flow runs them in order; selecting
`trainer.kind` changes the stages, never the plumbing (store, resume, publishing)."""

from __future__ import annotations

from ireasoner.ivr import stages as ivr
from ireasoner.ivr.update import update as ivr_update
from ireasoner.stages.propose import propose
from ireasoner.stages.runner import StageFn
from ireasoner.stages.score import score
from ireasoner.stages.solve import solve
from ireasoner.stages.update import update

# The last stage of every trainer is "update": it writes the checkpoint that resume restores.
TRAINER_STAGES: dict[str, tuple[tuple[str, StageFn], ...]] = {
    "ireasoner": (("propose", propose), ("solve", solve), ("score", score), ("update", update)),
    "ivr_r1": (("propose", ivr.propose), ("solve", solve), ("score", ivr.score),
               ("localise", ivr.localise), ("rectify", ivr.rectify), ("update", ivr_update)),
}


def stages_for(kind: str) -> tuple[tuple[str, StageFn], ...]:
    if kind not in TRAINER_STAGES:
        raise ValueError(f"no stages registered for trainer {kind!r}; known: {sorted(TRAINER_STAGES)}")
    return TRAINER_STAGES[kind]
