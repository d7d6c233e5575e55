"""Reward settings: spec §2-3 with the authors' published defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RewardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # Answer-level reward (Eq. 5): "continuous" soft majority p(a)^alpha * (1 - eta * l),
    # or "discrete" 1[a = dominant].
    mode: Literal["continuous", "discrete"] = "continuous"
    alpha: float = Field(0.7, gt=0, le=4)
    length_penalty: float = Field(0.05, ge=0, le=1)
    length_budget: int = Field(64, ge=1)
    # Density exponent of the dominant group (Eq. 2); use_density=False sets rho = 1.
    gamma: float = Field(0.7, ge=0, le=4)
    use_density: bool = True
    # Step agreement (Eq. 3-4).
    position_decay: float = Field(0.15, ge=0, le=10)
    similarity_range: Literal["unit", "signed"] = "unit"
    max_steps: int = Field(8, ge=1, le=64)
    min_group_for_step: int = Field(2, ge=1)
    step_tokens: int = Field(64, ge=1)
    # Mixing schedule (Eq. 6).
    lambda_max: float = Field(0.7, ge=0, le=1)
    warmup_iterations: int = Field(750, ge=0)
    ramp_iterations: int = Field(1750, ge=0)
    lambda_mode: Literal["schedule", "answer_only", "step_only"] = "schedule"
    # Proposer reward g(H): a Gaussian bump on the answer entropy (nats).
    entropy_target: float = Field(0.90, ge=0)
    entropy_width: float = Field(0.35, gt=0)

    @model_validator(mode="after")
    def _group_size(self) -> RewardConfig:
        if self.min_group_for_step < 1:
            raise ValueError("min_group_for_step must be at least 1")
        return self
