"""Evaluate every checkpoint of a run that has not been evaluated yet (the scheduled deployment).

Idempotent: a (checkpoint, task) pair with a row in `<run>/eval/<label>/results.parquet` is not
evaluated again (a failed one only with `retry_failed`), so running twice evaluates nothing twice.
The base model is evaluated once as the "base" label, for the comparison table.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ireasoner.config import Config
from ireasoner.eval.runner import (
    FAILED,
    RESULTS_FILE,
    EvalResult,
    evaluate_checkpoint,
    read_results,
)
from storage.lock import RunLocked, run_lock
from storage.run import RunStore

log = logging.getLogger(__name__)

BASE_LABEL = "base"


class EvaluationBusy(RuntimeError):
    """Another evaluation is already working on this run directory."""


@dataclass(frozen=True)
class EvalTarget:
    label: str  # "base" or the checkpoint directory's name, e.g. "iter-000010"
    adapter_dir: Path | None  # the Solver adapter (PEFT); None for the base model
    out_dir: Path


@dataclass(frozen=True)
class RunCheckpoints:
    base_model: str
    targets: tuple[EvalTarget, ...]  # base first, then checkpoints in iteration order
    eval_root: Path


def run_checkpoints(run_dir: Path) -> RunCheckpoints:
    """Everything this module knows of the run-directory layout, in one place: the base model
    from `manifest.json` (`model_path`), complete checkpoints under `checkpoints/iter-NNNNNN/`
    (Solver adapter in `adapters/solver/`), outputs under `eval/<label>/`."""
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    base_model = store.manifest().get("model_path")
    if not base_model:
        raise ValueError(f"{store.manifest_path} has no 'model_path': cannot tell the base model")
    eval_root = run_dir / "eval"
    targets = [EvalTarget(BASE_LABEL, None, eval_root / BASE_LABEL)]
    for _, path in store.checkpoints():
        targets.append(EvalTarget(path.name, path / "adapters" / "solver", eval_root / path.name))
    return RunCheckpoints(str(base_model), tuple(targets), eval_root)


def evaluate_pending(
    run_dir: Path,
    cfg: Config,
    tasks: list[str] | None = None,
    include_base: bool = True,
    retry_failed: bool = False,
    timeout_s: float | None = None,
    checkpoint: str | None = None,
) -> list[EvalResult]:
    """Evaluate each checkpoint (and the base) on the tasks it lacks; returns what was run.
    `checkpoint` (e.g. "iter-000010") restricts it to that one checkpoint and the base."""
    tasks = list(tasks if tasks is not None else cfg.evaluation.tasks)
    run = run_checkpoints(run_dir)
    if checkpoint is not None and checkpoint not in {t.label for t in run.targets}:
        log.warning("%s has no complete checkpoint %s (pruned, or not written yet): skipped",
                    run_dir, checkpoint)
    results = []
    try:
        with run_lock(run.eval_root):
            for target in run.targets:
                if target.label == BASE_LABEL and not include_base:
                    continue
                if checkpoint is not None and target.label not in (BASE_LABEL, checkpoint):
                    continue
                todo = pending_tasks(target, tasks, retry_failed)
                if todo:
                    results.append(evaluate_target(run.base_model, target, todo, cfg, timeout_s))
    except RunLocked:
        raise EvaluationBusy(f"another evaluation is running on {run_dir}; try again later") from None
    return results


def pending_tasks(target: EvalTarget, tasks: list[str], retry_failed: bool) -> list[str]:
    path = target.out_dir / RESULTS_FILE
    if not path.exists():
        return list(tasks)
    table = read_results(path)
    done = {
        task for label, task, status in zip(table["checkpoint"].to_pylist(),
                                             table["task"].to_pylist(),
                                             table["status"].to_pylist(), strict=True)
        if label == target.label and not (retry_failed and status == FAILED)
    }
    return [task for task in tasks if task not in done]


def evaluate_target(base_model: str, target: EvalTarget, tasks: list[str], cfg: Config,
                     timeout_s: float | None) -> EvalResult:
    log.info("evaluating %s on %s", target.label, ", ".join(tasks))
    pixels = (cfg.model.min_pixels, cfg.model.max_pixels)
    kwargs = dict(eval_cfg=cfg.evaluation, out_dir=target.out_dir, checkpoint_label=target.label,
                  backend=cfg.evaluation.backend, device=cfg.model.device, pixel_budget=pixels,
                  timeout_s=timeout_s, solver=cfg.solver)
    if target.adapter_dir is None:
        return evaluate_checkpoint(base_model, tasks, **kwargs)
    # lmms-eval's model classes take no adapter: evaluate a merged copy, deleted afterwards
    # (a full checkpoint is as large as the base model).
    from ireasoner.policy.export import export_merged

    target.out_dir.mkdir(parents=True, exist_ok=True)
    merged_dir = Path(tempfile.mkdtemp(prefix=".merged-", suffix=".tmp", dir=target.out_dir))
    try:
        merged = export_merged(base_model, target.adapter_dir, merged_dir / "model")
        return evaluate_checkpoint(str(merged), tasks, **kwargs)
    finally:
        shutil.rmtree(merged_dir)
