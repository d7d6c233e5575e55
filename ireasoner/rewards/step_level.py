"""Cosine agreement of steps with their prototypes (Eq. 3-4) and the leave-one-out matrix of
the diagnostics, for a batch of groups at once.

With unit rows ê and S_j = Σ_{k ∈ G_j} ê_kj (the prototype μ_j times |G_j|: same direction),
  c_ij = cos(ê_ij, μ_j)    = ê_ij·S_j / |S_j|
  S_ij = cos(ê_ij, μ_-i,j) = (ê_ij·S_j - 1) / |S_j - ê_ij|,  |S_j - ê_ij|² = |S_j|² - 2 ê_ij·S_j + 1
so one sum and one dot product per step give both. The embeddings dominate the cost, so they
are read from memory once: a chunk of groups (about 1 MB, so it stays in cache) is copied in
one `np.concatenate` into a padded (groups, |G|, depth, d) buffer, and the reductions run on
that buffer.

Degenerate rows: a zero vector, or a row with a non-finite entry (or whose squared norm
overflows float32), counts as a step of its rollout but has similarity 0 with everything.
A prototype or leave-one-out sum whose squared norm is below `_TINY` (its unit vectors cancel
out) has no direction: similarity 0 too.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

_TINY = 1e-6
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class RaggedSteps:
    """All rollouts' (J_i, d) embedding arrays, in batch order, with their layout."""

    arrays: list[np.ndarray]  # one per rollout; zero-step rollouts may have any empty shape
    lengths: np.ndarray  # (R,) J_i of each array (uncapped)
    rollout: np.ndarray  # (B, N) index into `arrays`, -1 for padding
    dim: int

    @property
    def steps(self) -> np.ndarray:
        """(B, N) J_i, 0 for padding."""
        return np.where(self.rollout >= 0, self.lengths[np.maximum(self.rollout, 0)], 0)


@dataclass(frozen=True)
class StepAgreement:
    members: np.ndarray  # (B, N, J) bool: rollout i is in G_j (in G, and J_i > j)
    similarity: np.ndarray  # (B, N, J) c_ij = cos(e_ij, μ_j), 0 where not a member
    loo: np.ndarray  # (B, N, J) S_ij = cos(e_ij, μ_-i,j), 0 where not a member


def step_agreement(ragged: RaggedSteps, in_group: np.ndarray, max_steps: int) -> StepAgreement:
    capped = np.minimum(ragged.steps, max_steps)
    members = in_group[:, :, None] & (np.arange(max_steps) < capped[:, :, None])
    dot, usable, prototype_sq = _reductions(ragged, np.where(in_group, capped, 0), max_steps)
    self_sq = usable.astype(np.float64)  # |ê_ij|²: 1, or 0 for a degenerate row
    rest_sq = prototype_sq[:, None, :] - 2.0 * dot + self_sq  # |S_j - ê_ij|²
    return StepAgreement(
        members=members,
        similarity=_safe_ratio(dot, prototype_sq[:, None, :], usable),
        loo=_safe_ratio(dot - self_sq, rest_sq, usable),
    )


def _safe_ratio(numerator: np.ndarray, denominator_sq: np.ndarray,
                usable: np.ndarray) -> np.ndarray:
    defined = usable & (denominator_sq > _TINY)
    ratio = numerator / np.sqrt(np.where(defined, denominator_sq, 1.0))
    return np.clip(np.where(defined, ratio, 0.0), -1.0, 1.0)


def _reductions(ragged: RaggedSteps, kept: np.ndarray,
                positions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ê_ij·S_j (B, N, J), usable rows (B, N, J) and |S_j|² (B, J). kept[b, i] is how many
    steps of rollout i enter G_j (0 outside G). Groups are bucketed by (|G|, deepest kept
    rollout) so each bucket pads to a tight (C, |G|, depth, d) block: no rows are read for
    rollouts outside G, and few zeros are written."""
    groups, width = kept.shape
    dot = np.zeros((groups, width, positions), dtype=np.float64)
    usable = np.zeros((groups, width, positions), dtype=bool)
    prototype_sq = np.zeros((groups, positions), dtype=np.float64)
    size = (kept > 0).sum(axis=1)
    depth = kept.max(axis=1)
    # Per group, the slots of its kept rollouts first, in order.
    slot_order = np.argsort(kept == 0, axis=1, kind="stable")
    for bucket_size, bucket_depth in set(zip(size.tolist(), depth.tolist(), strict=True)):
        if bucket_depth == 0:
            continue
        bucket = np.flatnonzero((size == bucket_size) & (depth == bucket_depth))[:, None]
        slots = slot_order[bucket[:, 0], :bucket_size]
        block = _bucket_reductions(ragged, ragged.rollout[bucket, slots], kept[bucket, slots],
                                   bucket_depth)
        dot[bucket, slots, :bucket_depth] = block[0]
        usable[bucket, slots, :bucket_depth] = block[1]
        prototype_sq[bucket[:, 0], :bucket_depth] = block[2]
    return dot, usable, prototype_sq


def _bucket_reductions(ragged: RaggedSteps, rollouts: np.ndarray, kept: np.ndarray,
                       depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reductions for C groups of the same shape: rollouts (C, g) with kept (C, g) rows of
    at most `depth`, chunk by chunk through one reused buffer."""
    count, size = rollouts.shape
    dot = np.zeros((count, size, depth), dtype=np.float64)
    usable = np.zeros((count, size, depth), dtype=bool)
    prototype_sq = np.zeros((count, depth), dtype=np.float64)
    pieces = _padded_pieces(ragged.arrays, rollouts, kept, depth, ragged.dim)
    per_chunk = max(1, _CHUNK_BYTES // (size * depth * 4 * ragged.dim))
    buffer = np.empty((min(per_chunk, count) * size * depth, ragged.dim), dtype=np.float32)
    for start in range(0, count, per_chunk):
        stop = min(start + per_chunk, count)
        rows = buffer[: (stop - start) * size * depth]
        np.concatenate(pieces[2 * start * size : 2 * stop * size], out=rows, casting="same_kind")
        steps = rows.reshape(stop - start, size, depth, ragged.dim)
        norm_sq = np.einsum("cnjd,cnjd->cnj", steps, steps)
        finite = np.isfinite(norm_sq)
        if not finite.all():
            steps[~finite] = 0.0  # a NaN row would poison every sum it enters
        ok = finite & (norm_sq > 0)  # padding rows are zero: never ok
        inverse_norm = np.where(ok, 1.0 / np.sqrt(np.where(ok, norm_sq, 1.0)), 0.0)
        inverse_norm = inverse_norm.astype(np.float32)
        prototype = np.einsum("cnj,cnjd->cjd", inverse_norm, steps)
        dot[start:stop] = np.einsum("cnjd,cjd->cnj", steps, prototype) * inverse_norm
        prototype_sq[start:stop] = np.einsum("cjd,cjd->cj", prototype, prototype)
        usable[start:stop] = ok
    return dot, usable, prototype_sq


def _padded_pieces(arrays: list[np.ndarray], rollouts: np.ndarray, kept: np.ndarray,
                   depth: int, dim: int) -> list[np.ndarray]:
    """Arrays whose concatenation is the padded (C, g, depth, d) block: for each rollout, its
    first `kept` rows, then zero rows up to `depth`. Built with C-level `map`s, not a Python
    loop over rollouts."""
    zeros = np.zeros((depth, dim), dtype=np.float32)
    zero_blocks = [zeros[: depth - k] for k in range(depth + 1)]
    counts = kept.reshape(-1).tolist()
    heads = map(operator.getitem, map(arrays.__getitem__, rollouts.reshape(-1).tolist()),
                map(slice, counts))
    pads = map(zero_blocks.__getitem__, counts)
    return [piece for pair in zip(heads, pads, strict=True) for piece in pair]
