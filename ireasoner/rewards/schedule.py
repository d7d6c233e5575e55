"""The mixing weight λ(t) of Eq. 6 and the Proposer's reward g(H) (spec §2-3)."""

from __future__ import annotations

import numpy as np

from ireasoner.rewards.config import RewardConfig


def lambda_at(iteration: int, config: RewardConfig, run_iterations: int) -> float:
    """λ(t): 0 up to T_warm, then linear to λ_max over T_ramp more iterations, with
    (T_warm, T_ramp) = config.lambda_span(run_iterations) (schedule.iterations).

    ramp_iterations = 0 makes the ramp a step to λ_max at t = T_warm, so warmup_iterations = 0
    with ramp_iterations = 0 is the paper's "w/o warmup" (λ = λ_max from t = 0).
    lambda_mode "answer_only" gives λ ≡ 0 and "step_only" λ ≡ 1 (Table 2 ablations).
    """
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    if config.lambda_mode == "answer_only":
        return 0.0
    if config.lambda_mode == "step_only":
        return 1.0
    warmup, ramp = config.lambda_span(run_iterations)
    past_warmup = iteration - warmup
    if ramp == 0:
        return config.lambda_max if past_warmup >= 0 else 0.0
    return config.lambda_max * min(max(past_warmup / ramp, 0.0), 1.0)


def proposer_reward(entropy: float | np.ndarray, config: RewardConfig) -> float | np.ndarray:
    """g(H) = exp(-(H - μ_H)² / (2 σ_H²)): highest for questions of intermediate difficulty."""
    deviation = (np.asarray(entropy, dtype=np.float64) - config.entropy_target) / config.entropy_width
    reward = np.exp(-0.5 * deviation**2)
    return float(reward) if reward.ndim == 0 else reward
