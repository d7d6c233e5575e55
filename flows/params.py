"""The train flow's parameters as Prefect shows them: typed, validated by the UI and the API.

The config files stay the source of truth; `Hyperparameters` are the main knobs a user sets per
run, each a typed field mapped to its config key (applied after `overrides`)."""

from __future__ import annotations

from typing import Literal

from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

# field -> config key; every key is checked against the schema by the tests.
HYPERPARAMETER_KEYS = {
    "iterations": "schedule.iterations",
    "images_per_iteration": "schedule.images_per_iteration",
    "num_rollouts": "solver.num_rollouts",
    "lr": "optimization.lr",
    "lambda_max": "rewards.lambda_max",
    "lambda_mode": "rewards.lambda_mode",
    "proposer_update_every": "proposer.update_every",
    "evaluate_every": "evaluation.every",
    "seed": "trainer.seed",
}


class Hyperparameters(BaseModel):
    """Unset fields keep the config's value."""

    model_config = ConfigDict(extra="forbid")

    iterations: int | None = Field(None, ge=1, description="schedule.iterations")
    images_per_iteration: int | None = Field(None, ge=1,
                                             description="schedule.images_per_iteration")
    num_rollouts: int | None = Field(None, ge=1, le=64, description="solver.num_rollouts (N)")
    lr: float | None = Field(None, ge=0, le=1, description="optimization.lr")
    lambda_max: float | None = Field(None, ge=0, le=1, description="rewards.lambda_max")
    lambda_mode: Literal["schedule", "answer_only", "step_only"] | None = Field(
        None, description="rewards.lambda_mode")
    proposer_update_every: int | None = Field(None, ge=1, description="proposer.update_every")
    evaluate_every: int | None = Field(None, ge=0, description="evaluation.every (0 = never)")
    seed: int | None = Field(None, description="trainer.seed")

    def overrides(self) -> list[str]:
        return [f"{HYPERPARAMETER_KEYS[name]}={value}"
                for name, value in self.model_dump(exclude_none=True).items()]


def train_run_name() -> str:
    """`<config stem>@<run directory name>`, e.g. `paper+no_warmup@exp3`, for the flow-run list."""
    params = flow_run.get_parameters()
    configs = params.get("config") or []
    configs = [configs] if isinstance(configs, str) else list(configs)
    stems = "+".join(str(c).rstrip("/").rsplit("/", 1)[-1].removesuffix(".yaml") for c in configs)
    run_dir = params.get("run_dir") or next(
        (o.partition("=")[2] for o in params.get("overrides") or []
         if o.startswith("storage.run_dir=")), None)
    where = str(run_dir).rstrip("/").rsplit("/", 1)[-1] if run_dir else "default run_dir"
    return f"{stems or 'defaults'}@{where}"
