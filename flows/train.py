"""The training flow `ireasoner`: each iteration is a sequence of Prefect tasks, each reading its
inputs from and writing its outputs to the run store, so a re-run resumes where it stopped.

    prefect deployment run ireasoner/train --param config=configs/smoke.yaml
    ireasoner train --config configs/smoke.yaml            # the same flow, in-process

With a Prefect server, one run directory is trained by one flow run at a time (a second request
waits for the first), and a GPU is shared with evaluation through a global limit
(flows/limits.py). Each kept checkpoint emits an event that the `evaluate` deployment's trigger
turns into an evaluation (flows/events.py).
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

from flows.events import publish_checkpoint, run_slug
from flows.limits import training_slots
from flows.params import Hyperparameters, train_run_name
from ireasoner.config import load_config
from ireasoner.inspect.artifacts import iteration_markdown, iteration_table
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.evaluate import evaluate
from ireasoner.pipeline.prepare import prepare
from ireasoner.pipeline.run import open_run
from ireasoner.pipeline.runner import run_stage
from ireasoner.pipeline.trainer import StageFn, TrainerSpec
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore, compact_run

# The context holds models in memory: tasks run in the flow's process and take it as an
# argument, so their inputs are neither hashed for caching nor persisted. Each task pulls the
# run store before it works and pushes after (no-ops for a local run): at a URL, the artifacts
# of a task are published, stage markers last, before the next task starts.
_TASK = dict(cache_policy=NO_CACHE, persist_result=False)


@task(name="stage", **_TASK)
def stage_task(ctx: RunContext, iteration: int, stage: str, fn: StageFn) -> dict:
    with ctx.store.synced():
        return run_stage(ctx, iteration, stage, fn)


@task(name="evaluate", **_TASK)
def evaluate_task(ctx: RunContext, iteration: int) -> dict:
    with ctx.store.synced():
        return run_stage(ctx, iteration, "evaluate", evaluate)


@task(name="publish", **_TASK)
def publish_task(store: RunStore, trainer: TrainerSpec, iteration: int,
                 checkpoint_kept: bool) -> None:
    """The iteration's traces as artifacts (one key per run, a new version per iteration:
    thousands of keys would bury the UI), and the kept checkpoint's event."""
    store.pull()
    key = run_slug(store.location)
    rewards = trainer.rollout_rewards.name
    if store.has_table(rewards, iteration):
        create_table_artifact(table=iteration_table(store, iteration, rewards),
                              key=f"{key}-rollouts",
                              description=f"Rollouts and rewards of iteration {iteration}")
    create_markdown_artifact(markdown=iteration_markdown(store, iteration), key=f"{key}-summary",
                             description=f"Summary of iteration {iteration}")
    if checkpoint_kept:
        publish_checkpoint(store.location, store.checkpoint_dir(iteration).name, iteration)


@task(name="compact", **_TASK)
def compact_task(store: RunStore, every: int) -> int:
    with store.synced():
        return len(compact_run(store, every))


@flow(name="ireasoner", log_prints=True, flow_run_name=train_run_name)
def train(config: list[str] | str = "configs/smoke.yaml", overrides: list[str] | None = None,
          run_dir: str | None = None, resume: bool = True,
          hyperparameters: Hyperparameters | None = None) -> dict:
    """Train (or resume) a run. `config` is one YAML file or several composed left to right;
    `overrides` are `section.key=value` strings, then `hyperparameters` (typed, unset fields
    keep the config's values); `run_dir` defaults to storage.run_dir."""
    logger = get_run_logger()
    overrides = list(overrides or [])
    if hyperparameters is not None:
        overrides += hyperparameters.overrides()
    if run_dir is not None:
        overrides.append(f"storage.run_dir={run_dir}")
    cfg = load_config(config, overrides)
    store = RunStore(cfg.storage.run_dir)
    with training_slots(store.location, cfg.model.device), store.lock(cfg.storage.lease_seconds):
        cfg, trainer = open_run(store, cfg, trainer_spec, resume=resume)
        ctx = RunContext(cfg, store, trainer)
        first = store.completed_iterations() + 1
        total = cfg.schedule.iterations
        logger.info("run %s: iterations %d..%d (config %s)", store.location, first, total,
                    cfg.fingerprint())
        progress = create_progress_artifact(progress=100.0 * (first - 1) / total,
                                            description=f"Training progress of {store.location}")
        if first > 1:  # finish what a stopped process may have left: a block, a compaction
            compact_task(store, cfg.storage.compact_every)
        try:
            stage_task.with_options(name="prepare")(ctx, 0, "prepare", prepare)
            if _evaluation_due(cfg, first - 1) and not store.stage_done(first - 1, "evaluate"):
                evaluate_task(ctx, first - 1)  # the previous process stopped right before it
            for iteration in range(first, total + 1):
                for stage, fn in trainer.stages:
                    stage_task.with_options(name=stage)(ctx, iteration, stage, fn)
                if _evaluation_due(cfg, iteration):
                    evaluate_task(ctx, iteration)
                publish_task(store, trainer, iteration, _checkpoint_kept(cfg, iteration))
                if cfg.storage.compact_every and iteration % cfg.storage.compact_every == 0:
                    compact_task(store, cfg.storage.compact_every)
                update_progress_artifact(progress, progress=100.0 * iteration / total)
        finally:
            ctx.close()  # a vLLM engine holds GPU memory and worker processes
    return {"run_dir": store.location, "iterations": store.completed_iterations()}


def _checkpoint_kept(cfg, iteration: int) -> bool:
    """Whether this iteration's checkpoint outlives the next one (see RunStore.prune_checkpoints):
    every keep_checkpoints_every-th, and the run's last."""
    every = cfg.storage.keep_checkpoints_every
    return iteration == cfg.schedule.iterations or bool(every and iteration % every == 0)


def _evaluation_due(cfg, iteration: int) -> bool:
    return bool(iteration >= 1 and cfg.evaluation.every and iteration % cfg.evaluation.every == 0)
