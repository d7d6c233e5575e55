"""The parts of an iteration's metrics row that every trainer fills alike."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from ireasoner.pipeline.tables import QUESTIONS, Table
from storage import RunStore


def common_metrics(store: RunStore, iteration: int, metrics: Table,
                   rewards: pl.DataFrame) -> dict[str, Any]:
    """A row of `metrics` with how the iteration's questions came about ("dataset" is a
    labelled question, IVR-R1) and its rollouts' count and answer rate (from the trainer's
    per-rollout rewards, which have an `answer` column); every other column None."""
    status = pl.from_arrow(store.read_table(QUESTIONS.name, iteration))["parse_status"]
    row = dict.fromkeys(metrics.schema.names)
    row.update(iteration=iteration, images=float(status.len()),
               questions_ok=float(status.is_in(["ok", "dataset"]).sum()),
               questions_fallback=float(status.str.starts_with("fallback").sum()),
               questions_skipped=float(status.str.starts_with("skipped").sum()),
               rollouts=float(rewards.height),
               answer_rate=mean_or_none(rewards["answer"].is_not_null()))
    return row


def stage_seconds(store: RunStore, iteration: int, stages: list[str],
                  last_stage_seconds: float) -> dict[str, float]:
    """`seconds_<stage>` of each completed stage, the last stage's own (it is still running
    when the metrics row is written: the caller measures it), and their total."""
    *earlier, last = stages
    seconds = {stage: store.stage_info(iteration, stage)["seconds"]
               for stage in earlier if store.stage_done(iteration, stage)}
    seconds[last] = last_stage_seconds
    return {**{f"seconds_{stage}": value for stage, value in seconds.items()},
            "seconds_total": sum(seconds.values())}


def mean_or_none(series: pl.Series) -> float | None:
    value = series.cast(pl.Float64).mean()
    return None if value is None or math.isnan(value) else float(value)
