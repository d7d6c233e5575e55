"""Cosine agreement of steps with their prototypes (Eq. 3-4) and the leave-one-out matrix of
the diagnostics, for a batch of groups at once.

Everything follows from the pairwise cosines C_ikj = cos(e_ij, e_kj) of the members of G_j.
With unit rows ê and S_j = Σ_{k ∈ G_j} ê_kj (the prototype μ_j times |G_j|: same direction),
  ê_ij·S_j = Σ_k C_ikj,  |S_j|² = Σ_ik C_ikj,
  c_ij = cos(ê_ij, μ_j)    = ê_ij·S_j / |S_j|
  S_ij = cos(ê_ij, μ_-i,j) = (ê_ij·S_j - 1) / |S_j - ê_ij|,  |S_j - ê_ij|² = |S_j|² - 2 ê_ij·S_j + 1.
The cosines come from one Gram matrix per (group, position), so the embeddings, which dominate
the cost, are read from memory once: a chunk of groups is copied in one `torch.cat` into a
zero-padded float64 buffer (16 MB, so it stays in cache), and one batched matmul of that buffer
with itself gives all its Gram matrices. In float64 every finite float32 row has a finite,
nonzero squared norm and sums of cosines keep their digits when unit vectors nearly cancel.
The per-rollout loop of the spec, `ireasoner.rewards.reference`, is what this is tested against.

Degenerate rows: a zero vector, or a row with a non-finite entry, counts as a step of its
rollout but has similarity 0 with everything. Any other row keeps its direction, however short
or long (scaling a row changes nothing). A prototype or leave-one-out sum whose squared norm is
below `NO_DIRECTION` (its unit vectors cancel out) has no direction: similarity 0 too.
"""

from __future__ import annotations

import itertools
import operator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

# A sum of unit rows whose squared norm is below this has no direction (the reference's too).
NO_DIRECTION = 1e-6
# 16 MB: fastest on the 2-core box (1 MB 161 ms, 4 MB 108, 16 MB 89, 64 MB 164 for 2,500
# groups, float32): fewer chunks cost less Python, and a chunk must still sit in cache.
_CHUNK_BYTES = 1 << 24
_WRAPPABLE = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_THREADS = 2
_PARALLEL_GROUPS = 64  # below this, starting the threads costs more than they save


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
    # Both 0 where not a member, and where the only member when min_group >= 2.
    similarity: np.ndarray  # (B, N, J) c_ij = cos(e_ij, μ_j)
    loo: np.ndarray  # (B, N, J) S_ij = cos(e_ij, μ_-i,j)


def step_agreement(ragged: RaggedSteps, in_group: np.ndarray, max_steps: int,
                   min_group: int = 1) -> StepAgreement:
    """`min_group` is RewardConfig.min_group_for_step. When it is >= 2, a position that only
    one member reaches is used for nothing (Eq. 4 skips it, S_ij needs two members): its row,
    which only the deepest rollout of a group has (15 % of the rows in benchmarks/rewards.py),
    is not read, and its similarities come back 0."""
    capped = np.minimum(ragged.steps, max_steps)
    members = in_group[:, :, None] & (np.arange(max_steps) < capped[:, :, None])
    kept = np.where(in_group, capped, 0)
    if min_group >= 2 and kept.shape[1] >= 2:
        second_deepest = -np.partition(-kept, 1, axis=1)[:, 1]
        kept = np.minimum(kept, second_deepest[:, None])
    cosines = _member_cosines(ragged, kept, max_steps)
    self_sq, usable, dot, prototype_sq, rest_sq = _sums(cosines)
    return StepAgreement(
        members=members,
        similarity=_safe_ratio(dot, prototype_sq[:, None, :], usable),
        loo=_safe_ratio(dot - self_sq, rest_sq, usable),
    )


def _sums(cosines: np.ndarray) -> tuple[np.ndarray, ...]:
    """From C_ikj (B, J, N, N): |ê_ij|² (1 or 0), usable rows, ê_ij·S_j and |S_j - ê_ij|²
    as (B, N, J), and |S_j|² as (B, J); in the order self_sq, usable, dot, prototype_sq,
    rest_sq."""
    self_sq = np.diagonal(cosines, axis1=2, axis2=3).transpose(0, 2, 1)
    dot = cosines.sum(axis=3).transpose(0, 2, 1)
    prototype_sq = cosines.sum(axis=(2, 3))
    rest_sq = prototype_sq[:, None, :] - 2.0 * dot + self_sq
    return self_sq, self_sq > 0, dot, prototype_sq, rest_sq


def _safe_ratio(numerator: np.ndarray, denominator_sq: np.ndarray,
                usable: np.ndarray) -> np.ndarray:
    defined = usable & (denominator_sq > NO_DIRECTION)
    ratio = numerator / np.sqrt(np.where(defined, denominator_sq, 1.0))
    return np.clip(np.where(defined, ratio, 0.0), -1.0, 1.0)


def _member_cosines(ragged: RaggedSteps, kept: np.ndarray, positions: int) -> np.ndarray:
    """C_ikj as a (B, J, N, N) float64 array: exactly 1 on the diagonal for a usable row, 0
    for a pair with a degenerate row or a non-member. kept[b, i] is how many steps of rollout
    i enter G_j (0 outside G). The rows are copied into a buffer for one batched matmul per
    chunk of groups.

    Groups are bucketed by (|G|, deepest kept rollout) so each bucket pads to a tight block:
    no rows are read for rollouts outside G, and few zeros are written. One core copies at
    well below the memory's speed, so two threads share the buckets' chunks: dealt in turn,
    largest first, so that both finish together; each reuses one buffer (a fresh 16 MB
    buffer per bucket cost ~8 % of the time in page faults)."""
    groups, width = kept.shape
    cosines = np.zeros((groups, positions, width, width))
    buckets = _buckets(ragged.rollout, kept)
    chunks = sorted(((bucket, start, stop) for bucket in buckets
                     for start, stop in _chunk_ranges(bucket, ragged.dim)),
                    key=lambda chunk: (chunk[1] - chunk[2]) * chunk[0].rows_per_group)
    threads = _THREADS if groups >= _PARALLEL_GROUPS else 1
    padding = torch.zeros((positions, ragged.dim), dtype=torch.float64)
    # pads[depth][k]: the zero rows that follow a rollout with k of a bucket's `depth` rows.
    pads = {bucket.depth: [padding[: bucket.depth - k] for k in range(bucket.depth + 1)]
            for bucket in buckets}

    def fill(share: list[tuple[_Bucket, int, int]]) -> None:
        buffer = torch.empty(max(((stop - start) * bucket.rows_per_group * ragged.dim
                                  for bucket, start, stop in share), default=0),
                             dtype=torch.float64)
        for bucket, start, stop in share:
            _chunk_gram(ragged, bucket, start, stop, buffer, pads[bucket.depth])

    def finish(bucket: _Bucket) -> None:
        size = bucket.slots.shape[1]
        gram = bucket.gram.numpy().reshape(len(bucket.groups), bucket.depth, size, size)
        cosines[bucket.groups[:, None, None, None], np.arange(bucket.depth)[:, None, None],
                bucket.slots[:, None, :, None], bucket.slots[:, None, None, :]] = _cosines(gram)

    if threads == 1:  # a few groups: starting a thread would cost more than the work
        fill(chunks)
        for bucket in buckets:
            finish(bucket)
        return cosines
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fill, [chunks[k::threads] for k in range(threads)]))
        list(pool.map(finish, buckets))  # each writes its own groups of `cosines`
    return cosines


@dataclass(frozen=True)
class _Bucket:
    """Groups of one shape: `size` kept rollouts of at most `depth` rows each."""

    groups: np.ndarray  # (C,) batch index of each group
    slots: np.ndarray  # (C, size) slot of each kept rollout in its group, in order
    rollouts: np.ndarray  # (C, size) their index into RaggedSteps.arrays
    kept: np.ndarray  # (C, size) their kept rows
    depth: int
    gram: torch.Tensor  # (C * depth, size, size) float64, filled chunk by chunk

    @property
    def rows_per_group(self) -> int:
        return self.slots.shape[1] * self.depth


def _buckets(rollouts: np.ndarray, kept: np.ndarray) -> list[_Bucket]:
    size = (kept > 0).sum(axis=1)
    depth = kept.max(axis=1)
    # Per group, the slots of its kept rollouts first, in order.
    slot_order = np.argsort(kept == 0, axis=1, kind="stable")
    buckets = []
    for bucket_size, bucket_depth in set(zip(size.tolist(), depth.tolist(), strict=True)):
        if bucket_depth == 0:
            continue
        groups = np.flatnonzero((size == bucket_size) & (depth == bucket_depth))
        slots = slot_order[groups, :bucket_size]
        buckets.append(_Bucket(
            groups=groups, slots=slots, rollouts=rollouts[groups[:, None], slots],
            kept=kept[groups[:, None], slots], depth=bucket_depth,
            gram=torch.empty((len(groups) * bucket_depth, bucket_size, bucket_size),
                             dtype=torch.float64)))
    return buckets


def _chunk_ranges(bucket: _Bucket, dim: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of the bucket's groups whose padded rows fill at most one buffer."""
    per_chunk = max(1, _CHUNK_BYTES // (bucket.rows_per_group * 8 * dim))
    count = len(bucket.groups)
    return [(start, min(start + per_chunk, count)) for start in range(0, count, per_chunk)]


def _chunk_gram(ragged: RaggedSteps, bucket: _Bucket, start: int, stop: int,
                buffer: torch.Tensor, pads: list[torch.Tensor]) -> None:
    """Gram matrices of groups [start, stop) of the bucket, into bucket.gram. Their rows are
    copied into `buffer` slot-major, (size, chunk, depth, d), so that the rows of one
    (group, position) are `size` rows a fixed stride apart: one batched matmul, without a
    copy, covers the whole chunk."""
    depth, dim = bucket.depth, ragged.dim
    size = bucket.slots.shape[1]
    rows = buffer[: (stop - start) * bucket.rows_per_group * dim]
    torch.cat(_padded_pieces(ragged.arrays, bucket.rollouts[start:stop].T,
                             bucket.kept[start:stop].T, pads), out=rows.view(-1, dim))
    steps = rows.view(size, -1, dim).transpose(0, 1)  # (chunk * depth, size, d)
    torch.bmm(steps, steps.transpose(1, 2), out=bucket.gram[start * depth : stop * depth])


def _cosines(gram: np.ndarray) -> np.ndarray:
    """Gram matrices (..., g, g) of raw rows -> their cosines, as `_member_cosines` says."""
    norm_sq = np.diagonal(gram, axis1=-2, axis2=-1).astype(np.float64)
    usable = np.isfinite(norm_sq) & (norm_sq > 0)  # padding rows are zero: never usable
    inverse_norm = np.where(usable, 1.0 / np.sqrt(np.where(usable, norm_sq, 1.0)), 0.0)
    pair = usable[..., :, None] & usable[..., None, :]
    # Masking first keeps a degenerate row's NaN or inf out of the products.
    cosines = np.where(pair, gram, 0.0) * inverse_norm[..., :, None] * inverse_norm[..., None, :]
    np.einsum("...ii->...i", cosines)[...] = usable  # cos(e, e) = 1 exactly
    return cosines


def _padded_pieces(arrays: list[np.ndarray], rollouts: np.ndarray, kept: np.ndarray,
                   pads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Tensors whose concatenation is the padded block of `rollouts`, in their order: for each
    rollout, its first `kept` rows, then `pads[kept]`, zero rows up to the block's depth.
    Built with C-level `map`s, not a Python loop over rollouts."""
    counts = kept.reshape(-1).tolist()
    heads = map(operator.getitem, map(arrays.__getitem__, rollouts.reshape(-1).tolist()),
                map(slice, counts))
    # Every head is kept, a pad only when it is not empty: cat pays for each piece it is given.
    keep = np.ones((kept.size, 2), dtype=bool)
    keep[:, 1] = kept.reshape(-1) < len(pads) - 1
    return list(itertools.compress(itertools.chain.from_iterable(
        zip(map(torch.from_numpy, map(_wrappable, heads)), map(pads.__getitem__, counts),
            strict=True)), keep.reshape(-1).tolist()))


def _wrappable(rows: np.ndarray) -> np.ndarray:
    """The rows as `torch.from_numpy` wraps them without a copy or a warning: as they are when
    they already are a writable, C-ordered, native float array (the concatenation into the
    float64 buffer converts them), else converted to float64 (same casting rule as
    `np.concatenate`'s default: float rows only)."""
    if (rows.dtype in _WRAPPABLE and rows.dtype.isnative and rows.flags.c_contiguous
            and rows.flags.writeable):
        return rows
    return rows.astype(np.float64, order="C", casting="same_kind")
