"""`ireasoner evaluate RUN --checkpoint latest|base|N`: lmms-eval on one checkpoint of a run, and
the comparison with the base model and the paper's Table 1."""

from __future__ import annotations

import polars as pl

from ireasoner.eval.report import compare_table
from ireasoner.eval.scheduled import BASE_LABEL
from ireasoner.pipeline.evaluate import evaluate_label
from ireasoner.pipeline.run import run_config
from storage import RunStore


def evaluate_run_checkpoint(store: RunStore, checkpoint: str, tasks: list[str] | None,
                            limit: int | None) -> str:
    """Evaluates what is not evaluated yet; returns the results and the comparison."""
    if checkpoint == "latest":
        label = store.checkpoints()[-1][1].name if store.checkpoints() else None
    elif checkpoint == BASE_LABEL:
        label = BASE_LABEL
    else:
        label = store.checkpoint_dir(int(checkpoint)).name
    if label is None:
        raise FileNotFoundError(f"{store.location} has no checkpoint yet")
    result = evaluate_label(store, run_config(store), label, tasks, limit)
    if result is None:
        return f"{label}: every task already evaluated (see {store.root / 'eval' / label})"
    rows = "\n".join(f"{r.task:<28} {r.metric!s:<36} {r.value!s:<10} {r.status} {r.error or ''}"
                     for r in result.rows)
    every = pl.concat([pl.read_parquet(path)
                       for path in (store.root / "eval").glob("*/results.parquet")],
                      how="diagonal_relaxed")
    return f"{rows}\n\n{compare_table(every, label)}\n\nresults: {result.results_path}"
