"""Versioned Arrow schemas of every artifact table (documented in docs/artifacts.md).

Bump SCHEMA_VERSION on any change a reader would notice; it is written into each file's metadata.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1

_KEY = [pa.field("iteration", pa.int32(), nullable=False),
        pa.field("image_index", pa.int32(), nullable=False)]
# What one sampled completion records, in every table of generated text.
_SAMPLED = [
    pa.field("seed", pa.int64()),
    pa.field("text", pa.string()),
    pa.field("token_ids", pa.list_(pa.int32())),  # as sampled, without the stop token
    pa.field("num_tokens", pa.int32()),
    pa.field("finish_reason", pa.string()),
]

TABLES: dict[str, pa.Schema] = {
    # One row per image of the iteration: what the Proposer asked.
    "questions": pa.schema(_KEY + [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("image_sha256", pa.string(), nullable=False),
        pa.field("source_ref", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("raw_output", pa.string()),
        pa.field("question", pa.string()),          # null when skipped
        pa.field("parse_status", pa.string(), nullable=False),
        pa.field("proposer_logprob", pa.float64()),
        pa.field("token_ids", pa.list_(pa.int32())),  # as sampled, without the stop token
        pa.field("num_tokens", pa.int32()),
        pa.field("finish_reason", pa.string()),
        pa.field("seed", pa.int64()),
    ]),
    # One row per Solver rollout.
    "rollouts": pa.schema(_KEY + [
        pa.field("rollout_index", pa.int32(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
    ] + _SAMPLED + [
        pa.field("logprob_sum", pa.float64()),
        pa.field("decode_errors", pa.bool_()),
    ]),
    # One row per parsed step of a rollout (at most max_steps per rollout).
    "steps": pa.schema(_KEY + [
        pa.field("rollout_index", pa.int32(), nullable=False),
        pa.field("step_index", pa.int32(), nullable=False),   # 1-based, as in the paper
        pa.field("text", pa.string()),
        pa.field("similarity", pa.float64()),       # r_ij (or c_ij when signed); null off-group
        pa.field("loo_similarity", pa.float64()),   # S_ij, leave-one-out; null when undefined
    ]),
    # One row per rollout: its parse and its rewards.
    "rewards": pa.schema(_KEY + [
        pa.field("rollout_index", pa.int32(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("parse_status", pa.string()),
        pa.field("answer_raw", pa.string()),
        pa.field("answer", pa.string()),            # normalised; null when unparsable
        pa.field("num_steps", pa.int32()),
        pa.field("steps_total", pa.int32()),
        pa.field("words_before_answer", pa.int32()),
        pa.field("in_group", pa.bool_()),
        pa.field("r_ans", pa.float64()),
        pa.field("r_step", pa.float64()),
        pa.field("r_sol", pa.float64()),
        pa.field("advantage", pa.float64()),        # r_sol - Solver baseline before the update
    ]),
    # One row per question: group statistics and the Proposer's reward.
    "groups": pa.schema(_KEY + [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("question", pa.string()),
        pa.field("dominant_answer", pa.string()),
        pa.field("valid_answers", pa.int32()),
        pa.field("entropy", pa.float64()),
        pa.field("density", pa.float64()),
        pa.field("group_fraction", pa.float64()),
        pa.field("proposer_reward", pa.float64()),
        pa.field("lam", pa.float64()),
        pa.field("valid_positions", pa.int32()),
        pa.field("mean_steps", pa.float64()),
        pa.field("mean_step_similarity", pa.float64()),
        pa.field("disagreement", pa.list_(pa.float64())),   # D_j, j = 1..J_max (null: undefined)
    ]),
    # One row per iteration: every diagnostic of spec §2, the updates, and stage wall times.
    "metrics": pa.schema([pa.field("iteration", pa.int32(), nullable=False)] + [
        pa.field(name, pa.float64()) for name in (
            "images", "questions_ok", "questions_fallback", "questions_skipped", "rollouts",
            "answer_rate", "steps_rate", "mean_steps", "entropy", "group_fraction",
            "proposer_reward", "step_similarity", "valid_positions", "r_ans", "r_step", "r_sol",
            "lam", "solver_loss", "solver_pg_loss", "solver_kl", "solver_beta",
            "solver_baseline", "solver_grad_norm", "solver_tokens", "proposer_loss",
            "proposer_pg_loss", "proposer_kl", "proposer_beta", "proposer_baseline",
            "proposer_grad_norm", "proposer_examples", "seconds_propose", "seconds_solve",
            "seconds_score", "seconds_update", "seconds_evaluate", "seconds_total")
    ] + [pa.field("proposer_updated", pa.bool_()),
         pa.field("disagreement", pa.list_(pa.float64()))] + [
        # IVR-R1 (trainer.kind ivr_r1); null in iReasoner runs.
        pa.field(name, pa.float64()) for name in (
            "r_format", "r_acc", "ivr_reward", "erosion_rate", "critiques", "rectified_kept",
            "shaped_token_share", "seconds_localise", "seconds_rectify")
    ] + [pa.field("rectify_success", pa.list_(pa.float64()))]),   # kept / attempted, per round
    # IVR-R1: one row per on-policy rollout, its reward and the label it was scored against.
    "ivr_rewards": pa.schema(_KEY + [
        pa.field("rollout_index", pa.int32(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),             # null: no label (pseudo with no answer)
        pa.field("label_source", pa.string(), nullable=False),   # dataset | pseudo | none
        pa.field("answer_raw", pa.string()),        # last complete \boxed{} content
        pa.field("answer", pa.string()),            # normalised; null when unparsable
        pa.field("r_format", pa.float64()),
        pa.field("r_acc", pa.float64()),
        pa.field("reward", pa.float64()),
        pa.field("eroded", pa.bool_()),             # reward < tau_c with a label: critiqued
    ]),
    # IVR-R1: one critique per eroded rollout, linked by (iteration, image_index, rollout_index).
    "critiques": pa.schema(_KEY + [
        pa.field("rollout_index", pa.int32(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
    ] + _SAMPLED),
    # IVR-R1: one row per rectification attempt of an eroded rollout (round 1..M).
    "rectified": pa.schema(_KEY + [
        pa.field("rollout_index", pa.int32(), nullable=False),   # the source rollout
        pa.field("round", pa.int32(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
    ] + _SAMPLED + [
        pa.field("answer", pa.string()),
        pa.field("r_format", pa.float64()),
        pa.field("r_acc", pa.float64()),
        pa.field("reward_before", pa.float64()),    # the attempt it rewrote (round 1: the rollout)
        pa.field("reward", pa.float64()),
        pa.field("kept", pa.bool_(), nullable=False),   # reward >= tau_c, within K_r per group
    ]),
    # Records of inputs that were skipped, with the reason: nothing is lost silently.
    "skips": pa.schema([
        pa.field("iteration", pa.int32(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("ref", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]),
}


def sampled_columns(completion: Any, seed: int) -> dict[str, Any]:
    """The `_SAMPLED` columns of one engine completion (an `ireasoner.engines.Completion`)."""
    return dict(seed=seed, text=completion.text, token_ids=completion.token_ids,
                num_tokens=completion.num_tokens, finish_reason=completion.finish_reason)


def make_table(name: str, rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> pa.Table:
    """Build a table of `name` from row dicts or a column dict; NaN floats become nulls.

    Raises ValueError naming the column when one is missing or unknown.
    """
    schema = TABLES[name]
    columns = _as_columns(rows, schema)
    unknown = set(columns) - set(schema.names)
    missing = set(schema.names) - set(columns)
    if unknown or missing:
        raise ValueError(f"table {name!r}: unknown columns {sorted(unknown)}, "
                         f"missing columns {sorted(missing)}")
    arrays = [pa.array([_clean(v) for v in columns[f.name]], type=f.type) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    return with_version(table)


def with_version(table: pa.Table) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[b"ireasoner.schema_version"] = str(SCHEMA_VERSION).encode()
    return table.replace_schema_metadata(meta)


def _as_columns(rows, schema: pa.Schema) -> dict[str, list[Any]]:
    if isinstance(rows, Mapping):
        return {k: list(v) for k, v in rows.items()}
    if not rows:
        return {name: [] for name in schema.names}
    names = set().union(*(r.keys() for r in rows))
    return {n: [r.get(n) for r in rows] for n in names}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
