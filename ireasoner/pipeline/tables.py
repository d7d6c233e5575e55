"""Versioned Arrow schemas of the tables every trainer writes, and how a table is built
(documented in docs/artifacts.md). A trainer's own tables live in its folder
(`ireasoner/trainers/<kind>/tables.py`), built with the same `Table`.

Bump SCHEMA_VERSION on any change a reader would notice (it is written into each file's
metadata and the run's manifest) and add the step to `ireasoner.pipeline.migrations`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 3
VERSION_KEY = b"ireasoner.schema_version"


@dataclass(frozen=True)
class Table:
    """A table of the run directory: its folder name and the schema of its files."""

    name: str
    schema: pa.Schema

    def build(self, rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> pa.Table:
        """From row dicts or a column dict; NaN floats become nulls. Raises ValueError naming
        the columns when one is missing or unknown."""
        columns = _as_columns(rows, self.schema)
        unknown = set(columns) - set(self.schema.names)
        missing = set(self.schema.names) - set(columns)
        if unknown or missing:
            raise ValueError(f"table {self.name!r}: unknown columns {sorted(unknown)}, "
                             f"missing columns {sorted(missing)}")
        arrays = [pa.array([_clean(v) for v in columns[f.name]], type=f.type) for f in self.schema]
        return with_version(pa.Table.from_arrays(arrays, schema=self.schema))

    def build_sparse(self, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
        """Like `build`, with the columns a row does not name left null."""
        return self.build([{name: row.get(name) for name in self.schema.names} for row in rows])


KEY = [pa.field("iteration", pa.int32(), nullable=False),
       pa.field("image_index", pa.int32(), nullable=False)]
# What one sampled completion records, in every table of generated text.
SAMPLED = [
    pa.field("seed", pa.int64()),
    pa.field("text", pa.string()),
    pa.field("token_ids", pa.list_(pa.int32())),  # as sampled, without the stop token
    pa.field("num_tokens", pa.int32()),
    pa.field("finish_reason", pa.string()),
]

# One row per image of the iteration: what the Proposer asked (or the dataset's question).
QUESTIONS = Table("questions", pa.schema(KEY + [
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
    # v3: the Proposer's <rationale> (null in migrated runs and for dataset questions).
    pa.field("rationale", pa.string()),
]))

# One row per Solver rollout.
ROLLOUTS = Table("rollouts", pa.schema(KEY + [
    pa.field("rollout_index", pa.int32(), nullable=False),
    pa.field("image_id", pa.string(), nullable=False),
] + SAMPLED + [
    pa.field("logprob_sum", pa.float64()),
    pa.field("decode_errors", pa.bool_()),
]))

# One row per example of a policy update: which sample, its reward, and the advantage and
# coefficients the update gave it. Written by the update stage, the one place that knows the
# baseline (scoring stays model-free).
UPDATES = Table("updates", pa.schema([
    pa.field("iteration", pa.int32(), nullable=False),
    pa.field("role", pa.string(), nullable=False),
    pa.field("step", pa.int32()),               # the role's optimizer step that used it
    pa.field("source_iteration", pa.int32()),   # the iteration that sampled it
    pa.field("image_index", pa.int32()),
    pa.field("rollout_index", pa.int32()),      # null for a Proposer question
    pa.field("off_policy", pa.bool_()),         # IVR-R1: a rectified rollout
    pa.field("reward", pa.float64()),
    pa.field("baseline", pa.float64()),         # b the advantage used (GRPO: the group mean)
    pa.field("advantage", pa.float64()),
    pa.field("kl", pa.float64()),               # token-mean KL of this example, before the step
    pa.field("beta", pa.float64()),
    pa.field("tokens", pa.int32()),
    # v3 (null in migrated runs): the example's reduced −log π(y|·) and the gradient norm
    # (before clipping) of the optimizer step that used it.
    pa.field("nll", pa.float64()),
    pa.field("grad_norm", pa.float64()),
]))

# Records of inputs that were skipped, with the reason: nothing is lost silently.
SKIPS = Table("skips", pa.schema([
    pa.field("iteration", pa.int32(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("ref", pa.string()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string()),
]))

COMMON_TABLES = (QUESTIONS, ROLLOUTS, UPDATES, SKIPS)

# The metrics row every trainer fills alike; a trainer adds its own columns (TrainerSpec).
_COUNTS = ("images", "questions_ok", "questions_fallback", "questions_skipped", "rollouts",
           "answer_rate")
_SOLVER_UPDATE = ("solver_loss", "solver_pg_loss", "solver_kl", "solver_beta",
                  "solver_grad_norm", "solver_tokens")


def metrics_table(trainer_fields: Sequence[pa.Field], stages: Sequence[str]) -> Table:
    """One row per iteration: counts, the trainer's diagnostics, the Solver's update and the
    wall time of each stage (and of the evaluation, when one ran)."""
    timed = [*stages, "evaluate", "total"]
    return Table("metrics", pa.schema(
        [pa.field("iteration", pa.int32(), nullable=False)]
        + [pa.field(name, pa.float64()) for name in _COUNTS]
        + list(trainer_fields)
        + [pa.field(name, pa.float64()) for name in _SOLVER_UPDATE]
        + [pa.field(f"seconds_{stage}", pa.float64()) for stage in timed]))


def sampled_columns(completion: Any, seed: int) -> dict[str, Any]:
    """The `SAMPLED` columns of one engine completion (an `ireasoner.engines.Completion`)."""
    return dict(seed=seed, text=completion.text, token_ids=completion.token_ids,
                num_tokens=completion.num_tokens, finish_reason=completion.finish_reason)


def with_version(table: pa.Table) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[VERSION_KEY] = str(SCHEMA_VERSION).encode()
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
