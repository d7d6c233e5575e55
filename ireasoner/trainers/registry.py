"""`trainer.kind` -> the trainer's spec. Adding a trainer: its folder, and one line here."""

from __future__ import annotations

from ireasoner.config import ConfigError
from ireasoner.pipeline.trainer import TrainerSpec
from ireasoner.trainers.ireasoner import spec as ireasoner
from ireasoner.trainers.ivr_r1 import spec as ivr_r1

TRAINERS: dict[str, TrainerSpec] = {spec.kind: spec for spec in (ireasoner.SPEC, ivr_r1.SPEC)}


def trainer_spec(kind: str) -> TrainerSpec:
    if kind not in TRAINERS:
        raise ConfigError(f"trainer.kind: unknown trainer {kind!r}; known: {', '.join(TRAINERS)}")
    return TRAINERS[kind]
