"""Cosine agreement of steps with their prototypes (Eq. 3-4) and the leave-one-out matrix of
the diagnostics, for a batch of groups at once.

With unit rows ê and S_j = Σ_{k ∈ G_j} ê_kj (the prototype μ_j times |G_j|: same direction),
  c_ij = cos(ê_ij, μ_j)    = ê_ij·S_j / |S_j|
  S_ij = cos(ê_ij, μ_-i,j) = (ê_ij·S_j - 1) / |S_j - ê_ij|,  |S_j - ê_ij|² = |S_j|² - 2 ê_ij·S_j + 1
so one sum and one dot product per step give both. The embeddings dominate the cost, so they
are read from memory once: a chunk of groups (about 1 MB, so it stays in cache) is copied in
one `np.concatenate` into a padded (groups, N, J, d) buffer, members' rows in place and zeros
elsewhere, and the three reductions run on that buffer.

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
    dot, usable, prototype_sq = _reductions(ragged, members, np.where(in_group, capped, 0))
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


def _reductions(ragged: RaggedSteps, members: np.ndarray,
                kept_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ê_ij·S_j (B, N, J), usable rows (B, N, J) and |S_j|² (B, J), chunk by chunk."""
    groups, width, positions = members.shape
    dot = np.zeros(members.shape, dtype=np.float64)
    usable = np.zeros(members.shape, dtype=bool)
    prototype_sq = np.zeros((groups, positions), dtype=np.float64)
    pieces = _padded_pieces(ragged, kept_rows, positions)
    per_chunk = max(1, _CHUNK_BYTES // (width * positions * 4 * ragged.dim))
    buffer = np.empty((min(per_chunk, groups) * width * positions, ragged.dim), np.float32)
    for start in range(0, groups, per_chunk):
        stop = min(start + per_chunk, groups)
        if not members[start:stop].any():
            continue
        rows = buffer[: (stop - start) * width * positions]
        np.concatenate(pieces[2 * start * width : 2 * stop * width], out=rows,
                       casting="same_kind")
        steps = rows.reshape(stop - start, width, positions, ragged.dim)
        norm_sq = np.einsum("cnjd,cnjd->cnj", steps, steps)
        finite = np.isfinite(norm_sq)
        if not finite.all():
            steps[~finite] = 0.0  # a NaN row would poison every sum it enters
        ok = members[start:stop] & finite & (norm_sq > 0)
        inverse_norm = np.where(ok, 1.0 / np.sqrt(np.where(ok, norm_sq, 1.0)), 0.0)
        inverse_norm = inverse_norm.astype(np.float32)
        prototype = np.einsum("cnj,cnjd->cjd", inverse_norm, steps)
        dot[start:stop] = np.einsum("cnjd,cjd->cnj", steps, prototype) * inverse_norm
        prototype_sq[start:stop] = np.einsum("cjd,cjd->cj", prototype, prototype)
        usable[start:stop] = ok
    return dot, usable, prototype_sq


def _padded_pieces(ragged: RaggedSteps, kept_rows: np.ndarray, positions: int) -> list:
    """Arrays whose concatenation is the padded (B, N, J, d) layout: for each rollout slot,
    its first kept_rows rows (none outside G), then zero rows up to J. Built with C-level
    `map`s, not a Python loop over rollouts."""
    zeros = np.zeros((positions, ragged.dim), dtype=np.float32)
    zero_blocks = [zeros[: positions - k] for k in range(positions + 1)]
    empty = zeros[:0]
    slot_arrays = [*ragged.arrays, empty]  # padding slots (rollout -1) take the empty block
    kept = kept_rows.reshape(-1).tolist()
    heads = map(operator.getitem, map(slot_arrays.__getitem__, ragged.rollout.reshape(-1).tolist()),
                map(slice, kept))
    pads = map(zero_blocks.__getitem__, kept)
    return [piece for pair in zip(heads, pads, strict=True) for piece in pair]
