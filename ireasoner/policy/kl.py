"""KL(π ‖ π_ref) estimators and the adaptive KL coefficient β (spec §4, paper Eq. 7–8).

Every estimator returns one value per rollout: the mean of its per-token KL over its response
tokens. The update then averages rollouts with equal weight, as the expectation over y in Eq. 7
does, so a long rollout does not outweigh a short one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ireasoner.config import KLConfig


def exact_token_kl(policy_logprobs: torch.Tensor, reference_logprobs: torch.Tensor) -> torch.Tensor:
    """Σ_v π(v)·(log π(v) − log π_ref(v)) per position, from two [..., vocab] log-softmax tensors."""
    if policy_logprobs.shape != reference_logprobs.shape:
        raise ValueError(
            f"policy and reference log-probs differ in shape: {tuple(policy_logprobs.shape)} "
            f"vs {tuple(reference_logprobs.shape)}"
        )
    return (policy_logprobs.exp() * (policy_logprobs - reference_logprobs)).sum(dim=-1)


def k3_token_kl(
    policy_token_logprobs: torch.Tensor, reference_token_logprobs: torch.Tensor
) -> torch.Tensor:
    """Schulman's k3 on the sampled tokens: exp(Δ) − Δ − 1 with Δ = log π_ref − log π.

    Unbiased for KL(π ‖ π_ref) when the tokens are drawn from π, never negative, and needs only
    the sampled tokens' log-probs instead of two vocabulary-wide tensors.
    """
    if policy_token_logprobs.shape != reference_token_logprobs.shape:
        raise ValueError(
            f"policy and reference token log-probs differ in shape: "
            f"{tuple(policy_token_logprobs.shape)} vs {tuple(reference_token_logprobs.shape)}"
        )
    log_ratio = reference_token_logprobs - policy_token_logprobs
    return torch.expm1(log_ratio) - log_ratio


def mean_over_response(token_values: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Per-rollout mean of [batch, tokens] values over the masked (response) tokens."""
    if token_values.shape != response_mask.shape:
        raise ValueError(
            f"values {tuple(token_values.shape)} and mask {tuple(response_mask.shape)} differ"
        )
    counts = response_mask.sum(dim=-1)
    if bool((counts == 0).any()):
        raise ValueError("a rollout has no response tokens: its KL is undefined")
    mask = response_mask.to(token_values.dtype)
    return (token_values * mask).sum(dim=-1) / counts.to(token_values.dtype)


@dataclass
class AdaptiveBeta:
    """β of Eq. 8: β ← clip(β·exp(η·(KL − τ)/τ), β_min, β_max); fixed when `adaptive` is off.
    The controller is multiplicative, so β = 0 (allowed when β_min = 0) stays 0."""

    value: float
    target: float
    rate: float
    minimum: float
    maximum: float
    adaptive: bool = True

    @classmethod
    def from_config(cls, cfg: KLConfig) -> AdaptiveBeta:
        return cls(
            value=cfg.beta_init,
            target=cfg.target,
            rate=cfg.adapt_rate,
            minimum=cfg.beta_min,
            maximum=cfg.beta_max,
            adaptive=cfg.adaptive,
        )

    def update(self, observed_kl: float) -> float:
        """Move β towards the KL budget τ and return the new value."""
        if not math.isfinite(observed_kl):
            raise ValueError(f"observed KL must be finite to adapt beta, got {observed_kl}")
        if self.adaptive and self.value > 0:
            exponent = self.rate * (observed_kl - self.target) / self.target
            # Capped in log space first: a huge KL would overflow exp() before the clip applies.
            exponent = min(exponent, math.log(self.maximum / self.value))
            self.value = min(max(self.value * math.exp(exponent), self.minimum), self.maximum)
        return self.value

    def state_dict(self) -> dict[str, float]:
        # Only β itself: τ, η and the bounds come from the run's config, so a resumed run that
        # changes them (a recorded config diff) uses the new values.
        return {"value": float(self.value)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        if set(state) != {"value"}:
            raise ValueError(f"beta state must hold exactly 'value', got keys {sorted(state)}")
        self.value = float(state["value"])
