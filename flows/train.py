"""The training flow `ireasoner`: each iteration is a sequence of Prefect tasks, each reading its
inputs from and writing its outputs to the run store, so a re-run resumes where it stopped.

    prefect deployment run ireasoner/train --param config=configs/smoke.yaml
    ireasoner train --config configs/smoke.yaml            # the same flow, in-process
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from ireasoner.config import load_config
from ireasoner.inspect.artifacts import iteration_markdown, iteration_table
from ireasoner.stages.context import RunContext
from ireasoner.stages.evaluate import evaluate
from ireasoner.stages.registry import stages_for
from ireasoner.stages.runner import StageFn, run_stage
from storage import RunStore, run_lock

# The context holds models in memory: tasks run in the flow's process and take it as an
# argument, so their inputs are neither hashed for caching nor persisted.
_TASK = dict(cache_policy=NO_CACHE, persist_result=False)


@task(name="stage", **_TASK)
def stage_task(ctx: RunContext, iteration: int, stage: str, fn: StageFn) -> dict:
    return run_stage(ctx, iteration, stage, fn)


@task(name="evaluate", **_TASK)
def evaluate_task(ctx: RunContext, iteration: int) -> dict:
    return run_stage(ctx, iteration, "evaluate", evaluate)


@task(name="publish", **_TASK)
def publish_task(store: RunStore, iteration: int) -> None:
    key = f"iteration-{iteration:06d}"
    if store.has_table("rewards", iteration):  # iReasoner's table; IVR-R1 writes ivr_rewards
        create_table_artifact(table=iteration_table(store, iteration), key=f"{key}-rollouts",
                              description=f"Rollouts and rewards of iteration {iteration}")
    create_markdown_artifact(markdown=iteration_markdown(store, iteration), key=f"{key}-summary",
                             description=f"Summary of iteration {iteration}")


@flow(name="ireasoner", log_prints=True)
def train(config: list[str] | str = "configs/smoke.yaml", overrides: list[str] | None = None,
          run_dir: str | None = None, resume: bool = True) -> dict:
    """Train (or resume) a run. `config` is one YAML file or several composed left to right;
    `overrides` are `section.key=value` strings; `run_dir` defaults to storage.run_dir."""
    logger = get_run_logger()
    overrides = list(overrides or [])
    if run_dir is not None:
        overrides.append(f"storage.run_dir={run_dir}")
    cfg = load_config(config, overrides)
    store = RunStore(cfg.storage.run_dir)
    with run_lock(store.root):
        store.open(cfg, resume=resume)
        ctx = RunContext(cfg, store)
        stages = stages_for(cfg.trainer.kind)
        first = store.completed_iterations() + 1
        total = cfg.schedule.iterations
        logger.info("run %s: iterations %d..%d (config %s)", store.root, first, total,
                    cfg.fingerprint())
        progress = create_progress_artifact(progress=100.0 * (first - 1) / total,
                                            description=f"Training progress of {store.root}")
        try:
            if _evaluation_due(cfg, first - 1) and not store.stage_done(first - 1, "evaluate"):
                evaluate_task(ctx, first - 1)  # the previous process stopped right before it
            for iteration in range(first, total + 1):
                for stage, fn in stages:
                    stage_task.with_options(name=stage)(ctx, iteration, stage, fn)
                if _evaluation_due(cfg, iteration):
                    evaluate_task(ctx, iteration)
                publish_task(store, iteration)
                update_progress_artifact(progress, progress=100.0 * iteration / total)
        finally:
            ctx.close()  # a vLLM engine holds GPU memory and worker processes
    return {"run_dir": str(store.root), "iterations": store.completed_iterations()}


def _evaluation_due(cfg, iteration: int) -> bool:
    return bool(iteration >= 1 and cfg.evaluation.every and iteration % cfg.evaluation.every == 0)
