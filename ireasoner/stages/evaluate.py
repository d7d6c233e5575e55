"""Stage 5 (every `evaluation.every` iterations): lmms-eval on the current Solver.

A failure is recorded in the stage's summary and logged; training goes on either way.
"""

from __future__ import annotations

import logging
import traceback

from ireasoner.stages.context import RunContext
from storage import RunStore

log = logging.getLogger(__name__)


def evaluate(ctx: RunContext, iteration: int) -> dict:
    label = ctx.store.checkpoint_dir(iteration).name
    try:
        result = _evaluate_label(ctx.store, label, None, None)
    except Exception as err:  # noqa: BLE001 - recorded below; an evaluation never stops training
        log.error("evaluation of %s failed: %s", label, err)
        return {"status": "failed", "error": "".join(traceback.format_exception_only(err)).strip()}
    failed = result.failed_tasks if result else []
    return {"status": "failed" if failed else "ok", "failed_tasks": failed,
            "results": str(result.results_path) if result else None}


def evaluate_run_checkpoint(store: RunStore, checkpoint: str, tasks: list[str] | None,
                            limit: int | None):
    """`ireasoner evaluate RUN --checkpoint latest|base|N`: returns this evaluation's results
    and the comparison with the base model and the paper's Table 1."""
    import polars as pl

    from ireasoner.eval.report import compare_table

    if checkpoint == "latest":
        label = store.checkpoints()[-1][1].name if store.checkpoints() else None
    elif checkpoint == "base":
        label = "base"
    else:
        label = store.checkpoint_dir(int(checkpoint)).name
    if label is None:
        raise FileNotFoundError(f"{store.location} has no checkpoint yet")
    result = _evaluate_label(store, label, tasks, limit)
    if result is None:
        return f"{label}: every task already evaluated (see {store.root / 'eval' / label})"
    rows = "\n".join(f"{r.task:<28} {r.metric!s:<36} {r.value!s:<10} {r.status} {r.error or ''}"
                     for r in result.rows)
    every = pl.concat([pl.read_parquet(path) for path in (store.root / "eval").glob("*/results.parquet")],
                      how="diagonal_relaxed")
    return f"{rows}\n\n{compare_table(every, label)}\n\nresults: {result.results_path}"


def _evaluate_label(store: RunStore, label: str, tasks: list[str] | None, limit: int | None):
    from ireasoner.eval.scheduled import evaluate_target, pending_tasks, run_checkpoints

    cfg = store.config()
    if limit is not None:
        cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"limit": limit})})
    tasks = list(tasks or cfg.evaluation.tasks)
    run = run_checkpoints(store.root)
    targets = {t.label: t for t in run.targets}
    if label not in targets:
        raise FileNotFoundError(f"no complete checkpoint {label} in {store.location}")
    target = targets[label]
    todo = pending_tasks(target, tasks, retry_failed=True)
    if not todo:
        return None
    return evaluate_target(run.base_model, target, todo, cfg, timeout_s=None)
