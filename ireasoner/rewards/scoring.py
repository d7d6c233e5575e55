"""The scoring API: rewards and diagnostics of groups of Solver rollouts (spec §2-3).

`score_batch` scores many groups (one per question) at once: answers become integer codes in
a padded (groups, N) array, step embeddings stay a ragged list whose rows are read once (see
step_level), and every formula is an array expression over (groups, N, J_max). Nothing loops
over rollouts in Python except to check inputs and to slice the outputs per group.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from ireasoner.rewards.answer_level import AnswerStats, answer_stats
from ireasoner.rewards.config import RewardConfig
from ireasoner.rewards.schedule import proposer_reward
from ireasoner.rewards.step_level import RaggedSteps, StepAgreement, step_agreement

# One question's rollouts: normalised answers (None = unparsable), (J_i, d) step embeddings,
# and words before <answer> (L_i of Eq. 5).
Group = tuple[Sequence[str | None], Sequence[np.ndarray], Sequence[int] | np.ndarray]


@dataclass(frozen=True)
class GroupScores:
    """Rewards of one group of N rollouts; arrays are read-only. Ranges: `answer`, `step`,
    `solver` in [0, 1] ([-1, 1] for `step` and `solver` with similarity_range "signed");
    `proposer` in (0, 1]; `entropy` in [0, log N]; `density`, `group_fraction` in [0, 1]."""

    answer: np.ndarray  # (N,) r_ans (Eq. 5)
    step: np.ndarray  # (N,) r_step = ρ · r̃_step (Eq. 4), 0 outside G or without valid position
    solver: np.ndarray  # (N,) (1 - λ) r_ans + λ r_step (Eq. 6)
    in_group: np.ndarray  # (N,) bool, rollout in the dominant group G
    proposer: float  # g(H)
    entropy: float  # H, nats
    density: float  # ρ
    dominant_answer: str | None  # â, None when every answer is None
    lam: float  # λ(t)
    valid_positions: int  # positions j with |G_j| >= min_group_for_step
    step_similarity: np.ndarray  # (N, J_max) r_ij as used (c_ij if signed), NaN if unused
    loo_similarity: np.ndarray  # (N, J_max) S_ij = cos(e_ij, μ_-i,j), NaN where undefined
    disagreement: np.ndarray  # (J_max,) D_j = 1 - mean_{i ∈ G_j} S_ij, NaN where undefined
    group_fraction: float  # |G| / N
    mean_steps: float  # mean J_i (capped at J_max) over the N rollouts
    mean_step_similarity: float  # mean of the used r_ij, NaN when none is used


def score_group(answers: Sequence[str | None], step_embeddings: Sequence[np.ndarray],
                answer_lengths: Sequence[int] | np.ndarray, lam: float,
                config: RewardConfig) -> GroupScores:
    """Rewards of one group; see `score_batch`."""
    return score_batch([(answers, step_embeddings, answer_lengths)], lam, config)[0]


def score_batch(groups: Sequence[Group], lam: float,
                config: RewardConfig) -> list[GroupScores]:
    """Rewards of many groups, computed together; one `GroupScores` per group, in order.
    `lam` is λ(t) of Eq. 6 (`lambda_at` of the iteration and the run's length).

    Embeddings need not be normalised; a zero or non-finite row is a step with similarity 0.
    Rollouts with more than `config.max_steps` steps keep their first `max_steps`.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam (λ of Eq. 6) must lie in [0, 1], got {lam}")
    if not groups:
        return []
    batch = _prepare(groups)
    answers = answer_stats(batch.codes, batch.sizes, batch.lengths, config)
    agreement = step_agreement(batch.ragged, answers.in_group, config.max_steps,
                               config.min_group_for_step)
    return _split(_combine(answers, agreement, batch, lam, config), batch)


@dataclass(frozen=True)
class _Batch:
    answers: list[str | None]  # all rollouts, batch order
    first: np.ndarray  # (B,) index of each group's first rollout
    sizes: np.ndarray  # (B,) N of each group
    codes: np.ndarray  # (B, N_max) answer codes, -1 for None and padding
    lengths: np.ndarray  # (B, N_max) L_i
    ragged: RaggedSteps


def _prepare(groups: Sequence[Group]) -> _Batch:
    for index, group in enumerate(groups):
        if len(group) != 3:
            raise ValueError(f"group {index}: expected (answers, step_embeddings, "
                             f"answer_lengths), got {len(group)} items")
    sizes = np.array([len(g[0]) for g in groups], dtype=np.int64)
    for index, (answers, embeddings, lengths) in enumerate(groups):
        if len(answers) == 0:
            raise ValueError(f"group {index}: a group needs at least one rollout")
        if not len(embeddings) == len(lengths) == len(answers):
            raise ValueError(f"group {index}: {len(answers)} answers, {len(embeddings)} "
                             f"step-embedding arrays and {len(lengths)} answer lengths")
    answers = list(itertools.chain.from_iterable(g[0] for g in groups))
    arrays = list(itertools.chain.from_iterable(g[1] for g in groups))
    _check_answers(answers)
    lengths = _answer_lengths(groups, len(answers))
    step_counts, dim = _check_embeddings(arrays)
    first = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    group_of = np.repeat(np.arange(len(sizes)), sizes)
    position = np.arange(len(answers)) - first[group_of]
    rollout = np.full((len(sizes), int(sizes.max())), -1, dtype=np.int64)
    rollout[group_of, position] = np.arange(len(answers))
    # Equal answers share a code, the index of their first occurrence; None maps to -1.
    first_seen: dict[str | None, int] = {None: -1}
    flat_codes = np.fromiter(map(first_seen.setdefault, answers, itertools.count()),
                             dtype=np.int64, count=len(answers))
    return _Batch(
        answers=answers,
        first=first,
        sizes=sizes,
        codes=np.where(rollout >= 0, flat_codes[rollout], -1),
        lengths=np.where(rollout >= 0, lengths[rollout], 0.0),
        ragged=RaggedSteps(arrays=arrays, lengths=step_counts, rollout=rollout, dim=dim),
    )


def _check_answers(answers: list[str | None]) -> None:
    wrong = [a for a in answers if a is not None and not isinstance(a, str)]
    if wrong:
        raise TypeError(f"answers must be normalised strings or None, got {wrong[0]!r}")


def _answer_lengths(groups: Sequence[Group], count: int) -> np.ndarray:
    """All groups' L_i as one float array (one `fromiter`: a conversion per group showed)."""
    try:
        lengths = np.fromiter(itertools.chain.from_iterable(g[2] for g in groups),
                              dtype=np.float64, count=count)
    except (TypeError, ValueError) as error:
        raise ValueError(f"answer_lengths must be numbers: {error}") from None
    if not np.all(np.isfinite(lengths) & (lengths >= 0)):
        raise ValueError("answer_lengths must be finite and >= 0")
    return lengths


def _check_embeddings(arrays: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """(J_i of each array, d). An empty array is a rollout without steps, whatever its shape."""
    try:
        shapes = [a.shape for a in arrays]
    except AttributeError:
        raise TypeError("step embeddings must be arrays with a shape (numpy)") from None
    dims = {shape[1] for shape in shapes if len(shape) == 2 and shape[0] > 0}
    bad = [i for i, shape in enumerate(shapes)
           if (len(shape) != 2 or shape[1] == 0) and np.prod(shape) != 0]
    if bad:
        raise ValueError(f"rollout {bad[0]} of the batch: step embeddings must be a (J, d) "
                         f"array, got shape {shapes[bad[0]]}")
    if len(dims) > 1:
        raise ValueError(f"step embeddings disagree on d: {sorted(dims)}")
    counts = np.array([shape[0] if len(shape) == 2 else 0 for shape in shapes], dtype=np.int64)
    return counts, dims.pop() if dims else 1


def _combine(answers: AnswerStats, agreement: StepAgreement, batch: _Batch, lam: float,
             config: RewardConfig) -> dict[str, np.ndarray]:
    """Eq. 4 and 6 and the diagnostics, as (B, ...) arrays named like GroupScores' fields."""
    members = agreement.members
    group_at = members.sum(axis=1)  # |G_j|, (B, J)
    valid = group_at >= config.min_group_for_step
    used = members & valid[:, None, :]
    agreement_score = agreement.similarity
    if config.similarity_range == "unit":
        agreement_score = (agreement_score + 1.0) / 2.0
    weights = np.exp(-config.position_decay * np.arange(config.max_steps)) * used
    weight_sum = weights.sum(axis=2)
    weighted = (weights * agreement_score).sum(axis=2) / np.where(weight_sum > 0, weight_sum, 1)
    step = answers.density[:, None] * weighted
    loo_defined = members & (group_at >= 2)[:, None, :]
    loo_count = loo_defined.sum(axis=1)
    loo_sum = np.where(loo_defined, agreement.loo, 0.0).sum(axis=1)
    used_count = used.sum(axis=(1, 2))
    used_sum = np.where(used, agreement_score, 0.0).sum(axis=(1, 2))
    capped_steps = np.minimum(batch.ragged.steps, config.max_steps)
    return {
        "answer": answers.reward,
        "step": step,
        "solver": (1.0 - lam) * answers.reward + lam * step,
        "in_group": answers.in_group,
        "proposer": proposer_reward(answers.proposer_entropy, config),
        "entropy": answers.entropy,
        "density": answers.density,
        "lam": np.full(len(batch.sizes), lam),
        "valid_positions": valid.sum(axis=1),
        "step_similarity": np.where(used, agreement_score, np.nan),
        "loo_similarity": np.where(loo_defined, agreement.loo, np.nan),
        "disagreement": np.where(loo_count > 0, 1.0 - loo_sum / np.maximum(loo_count, 1),
                                 np.nan),
        "group_fraction": answers.group_fraction,
        "mean_steps": capped_steps.sum(axis=1) / batch.sizes,
        "mean_step_similarity": np.where(used_count > 0,
                                         used_sum / np.maximum(used_count, 1), np.nan),
        "dominant_rollout": answers.dominant_rollout,
    }


_PER_ROLLOUT = ("answer", "step", "solver", "in_group", "step_similarity", "loo_similarity")
_SCALARS = ("proposer", "entropy", "density", "lam", "valid_positions", "group_fraction",
            "mean_steps", "mean_step_similarity")


def _split(columns: dict[str, np.ndarray], batch: _Batch) -> list[GroupScores]:
    """One GroupScores per group: read-only views of the batch arrays, Python scalars. Built
    positionally, one column at a time: thousands of groups make per-group dicts show."""
    for array in columns.values():
        array.flags.writeable = False
    sizes = batch.sizes.tolist()
    uniform = all(n == batch.codes.shape[1] for n in sizes)
    per_group: dict[str, list] = {name: columns[name].tolist() for name in _SCALARS}
    for name in _PER_ROLLOUT:  # iterating a (B, N) array yields its rows as views, in C
        per_group[name] = (list(columns[name]) if uniform else
                           [row[:n] for row, n in zip(columns[name], sizes, strict=True)])
    per_group["disagreement"] = list(columns["disagreement"])
    per_group["dominant_answer"] = [
        None if d < 0 else batch.answers[f + d]
        for f, d in zip(batch.first.tolist(), columns["dominant_rollout"].tolist(), strict=True)]
    return list(map(GroupScores, *(per_group[f.name] for f in fields(GroupScores))))
