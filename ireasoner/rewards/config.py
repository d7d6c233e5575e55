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
    # T_warm and T_ramp as fractions of schedule.iterations (spec §4: 0.3 and 0.7, so a run of
    # any length reaches λ_max at its end); absolute counts, when set, win over the fractions.
    warmup_fraction: float = Field(0.3, ge=0, le=1)
    ramp_fraction: float = Field(0.7, ge=0, le=1)
    warmup_iterations: int | None = Field(None, ge=0)
    ramp_iterations: int | None = Field(None, ge=0)
    lambda_mode: Literal["schedule", "answer_only", "step_only"] = "schedule"
    # Proposer reward g(H): a Gaussian bump on the answer entropy (nats).
    entropy_target: float = Field(0.90, ge=0)
    entropy_width: float = Field(0.35, gt=0)
    # H_p of g: an unparsable answer is its own singleton (spec §3), or "excluded" from the
    # support as in the diagnostic H (what v1 runs did).
    proposer_unparsable: Literal["singleton", "excluded"] = "singleton"

    @model_validator(mode="after")
    def _group_size(self) -> RewardConfig:
        if self.min_group_for_step < 1:
            raise ValueError("min_group_for_step must be at least 1")
        if self.warmup_fraction + self.ramp_fraction > 1 + 1e-12:
            raise ValueError(
                f"rewards.warmup_fraction + rewards.ramp_fraction must be <= 1 (got "
                f"{self.warmup_fraction} + {self.ramp_fraction}): λ would not reach "
                "rewards.lambda_max within the run")
        return self

    def lambda_span(self, iterations: int) -> tuple[int, int]:
        """(T_warm, T_ramp) in iterations for a run of `iterations`: the absolute counts where
        set, else the fractions of the run, rounded to the nearest iteration."""
        warm = (self.warmup_iterations if self.warmup_iterations is not None
                else round(self.warmup_fraction * iterations))
        if self.ramp_iterations is not None:
            return warm, self.ramp_iterations
        if self.warmup_iterations is not None:
            return warm, round(self.ramp_fraction * iterations)
        # The ramp ends at the rounded end fraction, so fractions summing to 1 end exactly at
        # the last iteration (rounding both parts up could overshoot it: 1.5 + 3.5 of 5).
        end = min(round((self.warmup_fraction + self.ramp_fraction) * iterations), iterations)
        return warm, max(end - warm, 0)
