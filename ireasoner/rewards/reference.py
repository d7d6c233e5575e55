"""The spec's rewards transcribed rollout by rollout, as one would write them first: the
readable reference `score_batch` is tested against (tests/rewards) and timed against
(benchmarks/rewards.py). Slow on purpose; never used in training.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ireasoner.rewards.config import RewardConfig
from ireasoner.rewards.schedule import proposer_reward
from ireasoner.rewards.step_level import NO_DIRECTION


@dataclass(frozen=True)
class ReferenceScores:
    solver: list[float]  # r_sol of each rollout
    proposer: float  # g(H_p)
    loo: np.ndarray  # (N, J_max) S_ij, NaN where undefined


def reference_score_group(answers: Sequence[str | None], embeddings: Sequence[np.ndarray],
                          lengths: Sequence[float], lam: float,
                          config: RewardConfig) -> ReferenceScores:
    n, depth = len(answers), config.max_steps
    counts = Counter(a for a in answers if a is not None)
    entropy = -sum(c / n * math.log(c / n) for c in counts.values())
    if config.proposer_unparsable == "singleton":  # H_p: each unparsable answer its own
        entropy -= sum(1 / n * math.log(1 / n) for a in answers if a is None)
    dominant = max(counts, key=lambda a: (counts[a], -answers.index(a)), default=None)
    group = [i for i in range(n) if answers[i] is not None and answers[i] == dominant]
    density = (len(group) / n) ** config.gamma if config.use_density else 1.0
    answer_reward = []
    for i in range(n):
        if answers[i] is None:
            answer_reward.append(0.0)
        elif config.mode == "discrete":
            answer_reward.append(float(i in group))
        else:
            over = min(max((lengths[i] - config.length_budget) / config.length_budget, 0), 1)
            answer_reward.append((counts[answers[i]] / n) ** config.alpha
                                 * (1 - config.length_penalty * over))
    units = {}
    for i in group:  # in float64, where no finite float32 row has a squared norm out of range
        rows = np.asarray(embeddings[i][:depth], dtype=np.float64)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        usable = np.isfinite(norms) & (norms > 0)  # zero or non-finite: a degenerate row
        units[i] = np.where(usable, rows / np.where(usable, norms, 1), 0)
    step_reward = [0.0] * n
    loo = np.full((n, depth), np.nan)
    for i in group:
        total = weight_sum = 0.0
        for j in range(len(units[i])):
            members = [k for k in group if len(units[k]) > j]
            others = [units[k][j] for k in members if k != i]
            if others:
                loo[i, j] = _cosine(units[i][j], np.mean(others, axis=0), len(others))
            if len(members) < config.min_group_for_step:
                continue
            prototype = np.mean([units[k][j] for k in members], axis=0)
            similarity = _cosine(units[i][j], prototype, len(members))
            if config.similarity_range == "unit":
                similarity = (similarity + 1) / 2
            weight = math.exp(-config.position_decay * j)
            total += weight * similarity
            weight_sum += weight
        step_reward[i] = density * total / weight_sum if weight_sum else 0.0
    solver = [(1 - lam) * a + lam * s for a, s in zip(answer_reward, step_reward, strict=True)]
    return ReferenceScores(solver, float(proposer_reward(entropy, config)), loo)


def _cosine(unit: np.ndarray, mean: np.ndarray, count: int) -> float:
    """cos(unit, mean) of a unit (or degenerate, zero) row and the mean of `count` unit rows;
    0 where that sum of unit rows has no direction (its squared norm, count² |mean|², is
    below NO_DIRECTION)."""
    if not unit.any() or count * count * (mean @ mean) < NO_DIRECTION:
        return 0.0
    return float(unit @ mean / (np.linalg.norm(unit) * np.linalg.norm(mean)))
