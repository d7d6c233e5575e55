"""The event a run emits when it keeps a checkpoint, and the deployment trigger that evaluates
it (prefect.yaml's `evaluate` deployment and `ireasoner serve` use the same trigger; a test
checks the two agree)."""

from __future__ import annotations

import hashlib
import re

from prefect.events import emit_event
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

CHECKPOINT_PUBLISHED = "ireasoner.checkpoint.published"
RUN_RESOURCE_PREFIX = "ireasoner.run."
# Rendered by the automation from the triggering event into the evaluation flow's parameters.
TRIGGER_PARAMETERS = {"run_dir": "{{ event.payload.run_dir }}",
                      "checkpoint": "{{ event.payload.checkpoint }}"}


def run_slug(location: str) -> str:
    """A short, stable name for a run (artifact keys, resource ids): the directory's name in
    lowercase letters, digits and dashes, plus a hash of the whole location."""
    tail = location.rstrip("/").rsplit("/", 1)[-1].lower()
    readable = re.sub(r"[^a-z0-9]+", "-", tail).strip("-")[:40] or "run"
    return f"{readable}-{hashlib.sha256(location.encode()).hexdigest()[:8]}"


def publish_checkpoint(location: str, checkpoint: str, iteration: int) -> None:
    emit_event(
        event=CHECKPOINT_PUBLISHED,
        resource={"prefect.resource.id": RUN_RESOURCE_PREFIX + run_slug(location),
                  "prefect.resource.name": location},
        payload={"run_dir": location, "checkpoint": checkpoint, "iteration": iteration},
    )


def checkpoint_trigger() -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        expect={CHECKPOINT_PUBLISHED},
        match={"prefect.resource.id": RUN_RESOURCE_PREFIX + "*"},
        parameters=TRIGGER_PARAMETERS,
    )
