"""Answer distribution, dominant group and answer-level reward (Eq. 1, 2, 5), for a batch of
groups at once. Rollouts are laid out as (groups, N) arrays of integer answer codes: equal codes
are equal normalised answers, -1 is an unparsable answer (or padding of a shorter group)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ireasoner.rewards.config import RewardConfig


@dataclass(frozen=True)
class AnswerStats:
    in_group: np.ndarray  # (B, N) bool: rollout i is in the dominant group G
    reward: np.ndarray  # (B, N) r_ans (Eq. 5, or the discrete 1[a_i = â])
    entropy: np.ndarray  # (B,) H in nats (the diagnostic: unparsable answers excluded)
    proposer_entropy: np.ndarray  # (B,) H_p of g: unparsable answers singletons (spec §3)
    group_fraction: np.ndarray  # (B,) |G| / N
    density: np.ndarray  # (B,) ρ = (|G| / N)^γ, or 1 without density weighting
    dominant_rollout: np.ndarray  # (B,) first rollout of â, -1 when every answer is None


def answer_stats(codes: np.ndarray, group_sizes: np.ndarray, answer_lengths: np.ndarray,
                 config: RewardConfig) -> AnswerStats:
    """codes: (B, N) int, -1 for None; group_sizes: (B,) N of each group (padding excluded);
    answer_lengths: (B, N) words before <answer>."""
    valid = codes >= 0
    n = group_sizes.astype(np.float64)[:, None]
    # counts[b, i] = number of rollouts of group b sharing rollout i's answer (0 if invalid).
    counts = ((codes[:, :, None] == codes[:, None, :]) & valid[:, :, None]).sum(axis=2)
    share = counts / n  # p(a_i) (Eq. 1); invalid answers count in N, never in the support
    entropy = -np.where(valid, np.log(np.where(valid, share, 1.0)), 0.0).sum(axis=1) / n[:, 0]
    # argmax returns the first rollout among the most frequent answers, i.e. the answer whose
    # first rollout comes first: the spec's tie rule.
    first_of_dominant = counts.argmax(axis=1)
    has_dominant = counts.max(axis=1) > 0
    dominant_code = np.take_along_axis(codes, first_of_dominant[:, None], axis=1)
    in_group = valid & (codes == dominant_code) & has_dominant[:, None]
    group_fraction = in_group.sum(axis=1) / n[:, 0]
    density = group_fraction**config.gamma if config.use_density else np.ones_like(group_fraction)
    if config.mode == "discrete":
        reward = in_group.astype(np.float64)
    else:
        overrun = (answer_lengths - config.length_budget) / config.length_budget
        penalty = 1.0 - config.length_penalty * np.clip(overrun, 0.0, 1.0)
        reward = np.where(valid, share**config.alpha * penalty, 0.0)
    entropy = np.maximum(entropy, 0.0)  # -0.0 and rounding below zero for one answer
    if config.proposer_unparsable == "singleton":
        # Each unparsable rollout is an answer of its own: -(1/N) log(1/N) apiece.
        unparsable = group_sizes - valid.sum(axis=1)
        proposer_entropy = entropy + unparsable * np.log(n[:, 0]) / n[:, 0]
    else:
        proposer_entropy = entropy
    return AnswerStats(
        in_group=in_group,
        reward=reward,
        entropy=entropy,
        proposer_entropy=proposer_entropy,
        group_fraction=group_fraction,
        density=density,
        dominant_rollout=np.where(has_dominant, first_of_dominant, -1),
    )
