"""The evaluation stage (every `evaluation.every` iterations): lmms-eval on the current Solver.

A failure is recorded in the stage's summary and logged; training goes on either way.
"""

from __future__ import annotations

import logging
import traceback

from ireasoner.config import Config
from ireasoner.eval.runner import EvalResult, ServedModel
from ireasoner.eval.scheduled import evaluate_target, pending_tasks, run_checkpoints
from ireasoner.pipeline.context import RunContext
from storage import RunStore

log = logging.getLogger(__name__)


def evaluate(ctx: RunContext, iteration: int) -> dict:
    label = ctx.store.checkpoint_dir(iteration).name
    try:
        result = evaluate_label(ctx.store, ctx.config, label, served=served_solver(ctx))
    except Exception as err:  # noqa: BLE001 - recorded below; an evaluation never stops training
        log.error("evaluation of %s failed: %s", label, err)
        return {"status": "failed", "error": "".join(traceback.format_exception_only(err)).strip()}
    failed = result.failed_tasks if result else []
    return {"status": "failed" if failed else "ok", "failed_tasks": failed,
            "results": str(result.results_path) if result else None}


def served_solver(ctx: RunContext) -> ServedModel | None:
    """With rollout.engine vllm_server, the current Solver as the rollout server serves it:
    evaluating there needs no second engine beside the resident one (docs/evaluation.md)."""
    if ctx.config.rollout.engine != "vllm_server":
        return None
    engine = ctx.engine
    name = engine.serve_adapter(ctx.adapter("solver"))
    return ServedModel(engine.url, name, ctx.config.rollout.server.request_timeout_s)


def evaluate_label(store: RunStore, cfg: Config, label: str, tasks: list[str] | None = None,
                   limit: int | None = None, served: ServedModel | None = None
                   ) -> EvalResult | None:
    """Evaluate checkpoint `label` ("base" or "iter-NNNNNN") of the run on the tasks it has no
    result for (failed ones again); None when there is nothing left to evaluate."""
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
    return evaluate_target(run.base_model, target, todo, cfg, timeout_s=None, served=served)
