"""Evaluate one checkpoint on lmms-eval tasks; results as rows in `<out_dir>/results.parquet`.

Every task runs greedy (temperature 0; a sampled task such as ireasoner_world at its own
temperature) with `evaluation.max_new_tokens`, through vLLM on a GPU or lmms-eval's
transformers `qwen2_5_vl` class otherwise, or through a running vLLM server (the rollout
engine's, `ServedModel`) with lmms-eval's `openai` class. Each task is its own lmms-eval process: a
task that fails is recorded (status "failed", with the error) and the others still run. lmms-eval's
own files (results JSON, per-sample JSONL, log) stay under `<out_dir>/lmms/<task>/`.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ireasoner.config import EvaluationConfig, SolverConfig
from ireasoner.eval.lmms import (
    Backend,
    lmms_command,
    metric_values,
    model_spec,
    run_task,
    subprocess_env,
)
from ireasoner.eval.local_task import LOCAL_TASK, build_local_task_data, write_local_task
from ireasoner.eval.offline import (
    cache_roots,
    hub_is_offline,
    missing_dataset_message,
    task_datasets,
)
from ireasoner.eval.tasks.math_rules import INCLUDE_DIR as MATH_RULES_DIR
from ireasoner.eval.tasks.math_rules import MATH_RULE_TASKS
from ireasoner.eval.world_task import (
    WORLD_TASK,
    WORLD_TASK_TEMPERATURE,
    build_world_task_data,
    write_world_task,
)
from ireasoner.progress import steps
from storage.atomic import atomic_write_parquet

log = logging.getLogger(__name__)

RESULTS_FILE = "results.parquet"
LOCAL_TASK_SIZE = 64  # rows of the local benchmark (fixed seed 0: every checkpoint sees the same)
OK, FAILED = "ok", "failed"
# Tasks scored on samples (pass@1, maj@k) rather than one greedy answer: their temperature.
SAMPLED_TASKS = {WORLD_TASK: WORLD_TASK_TEMPERATURE}

RESULTS_SCHEMA = pa.schema([
    pa.field("checkpoint", pa.string(), nullable=False),
    pa.field("task", pa.string(), nullable=False),
    pa.field("metric", pa.string()),  # null on a failed task
    pa.field("value", pa.float64()),
    pa.field("samples", pa.int64()),
    pa.field("seconds", pa.float64()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("timestamp", pa.string(), nullable=False),  # UTC, ISO 8601
])


@dataclass(frozen=True)
class ServedModel:
    """A model an OpenAI-compatible server already serves (the rollout engine's vLLM server):
    lmms-eval's `openai` class evaluates it there, with no second engine in memory."""

    url: str  # the server's root, e.g. http://127.0.0.1:8000
    name: str  # the served model or adapter name, e.g. solver-v7
    timeout_s: float = 600.0

    def model_args(self) -> dict[str, str]:
        return {"base_url": f"{self.url}/v1", "timeout": str(int(self.timeout_s))}


@dataclass(frozen=True)
class ResultRow:
    checkpoint: str
    task: str
    metric: str | None
    value: float | None
    samples: int | None
    seconds: float
    status: str
    error: str | None
    timestamp: str


@dataclass(frozen=True)
class EvalResult:
    checkpoint: str
    results_path: Path
    rows: tuple[ResultRow, ...]  # this call's rows (the file also keeps other tasks' rows)

    @property
    def failed_tasks(self) -> list[str]:
        return sorted({row.task for row in self.rows if row.status == FAILED})


def evaluate_checkpoint(
    model_path: str,
    tasks: list[str],
    eval_cfg: EvaluationConfig,
    out_dir: Path,
    checkpoint_label: str,
    backend: Literal["auto", "vllm", "transformers"] = "auto",
    device: Literal["auto", "cpu", "cuda"] = "auto",
    pixel_budget: tuple[int, int] | None = None,
    model_args: dict[str, str] | None = None,
    timeout_s: float | None = None,
    solver: SolverConfig | None = None,
    served: ServedModel | None = None,
) -> EvalResult:
    """Evaluate `model_path` (a full checkpoint: merge adapters first) on `tasks`.

    `pixel_budget` is the image (min_pixels, max_pixels) of the transformers backend; `model_args`
    adds lmms-eval model arguments (e.g. gpu_memory_utilization for vLLM). `solver` gives the
    local task its prompt (default: the default Solver prompt). With `served`, `model_path` is
    ignored: lmms-eval asks that server for `served.name` (its pixel budget is the server's).
    Rows for these tasks replace any earlier rows of the same checkpoint and task in
    `<out_dir>/results.parquet`.
    """
    if not tasks:
        raise ValueError("no tasks to evaluate")
    # Absolute: lmms-eval runs with its output folder as working directory, where a relative
    # run directory (`--run-dir runs/x`) would point nowhere.
    out_dir = Path(out_dir).resolve()
    if Path(model_path).exists():  # a local checkpoint (not a hub id): absolute for the same reason
        model_path = str(Path(model_path).resolve())
    device = _resolve_device(device)
    if served is not None:
        chosen: Backend = "openai"
        model, args = model_spec(chosen, served.name, device, eval_cfg.max_new_tokens, None,
                                 {**served.model_args(), **(model_args or {})})
    else:
        chosen = resolve_backend(backend, device)
        model, args = model_spec(chosen, str(model_path), device, eval_cfg.max_new_tokens,
                                 pixel_budget, model_args)
    include_paths = _include_paths(tasks, eval_cfg, out_dir, solver)
    env = subprocess_env(_hub_env(eval_cfg))
    blocked = preflight(tasks, eval_cfg, list(include_paths.values()))

    results_path = out_dir / RESULTS_FILE
    rows: list[ResultRow] = []
    for task in steps(tasks, len(tasks), f"evaluate {checkpoint_label}"):
        if task in blocked:
            log.error("not evaluating %s: %s", task, blocked[task])
            task_rows = [_failed_row(checkpoint_label, task, 0.0, blocked[task])]
        else:
            output_dir = out_dir / "lmms" / task
            command = lmms_command(task, model, args, eval_cfg.max_new_tokens, output_dir,
                                   eval_cfg.batch_size, eval_cfg.limit, include_paths.get(task),
                                   temperature=SAMPLED_TASKS.get(task, 0.0))
            log.info("evaluating %s on %s (%s)", checkpoint_label, task, chosen)
            task_rows = _rows_of_run(checkpoint_label, run_task(task, command, output_dir, env,
                                                                timeout_s))
        # Written after every task: an interrupted evaluation keeps what it finished.
        _merge_results(results_path, task_rows)
        rows.extend(task_rows)
        for row in task_rows:
            log.info("%s %s: %s %s = %s (%.0f s)", checkpoint_label, row.task, row.status,
                     row.metric, row.value, row.seconds)
    return EvalResult(checkpoint_label, results_path, tuple(rows))


def resolve_backend(backend: str, device: str) -> Backend:
    """vLLM on a GPU when it is importable, transformers otherwise; an explicit choice wins."""
    if backend == "vllm" and device != "cuda":
        raise ValueError("evaluation backend 'vllm' needs a CUDA device")
    if backend != "auto":
        return backend  # type: ignore[return-value]
    if device == "cuda" and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "transformers"


def preflight(tasks: list[str], eval_cfg: EvaluationConfig,
              include_paths: list[Path]) -> dict[str, str]:
    """Tasks that cannot run, with the reason: offline, a task whose dataset is not in the cache
    (checked against lmms-eval's registry before any model is loaded)."""
    if not hub_is_offline(eval_cfg.dataset_cache):
        return {}
    roots = cache_roots(eval_cfg.dataset_cache)
    blocked: dict[str, str] = {}
    for task, refs in task_datasets(tasks, include_paths).items():
        if isinstance(refs, str):
            blocked[task] = refs
            continue
        problems = [m for m in (missing_dataset_message(r, roots) for r in refs) if m]
        if problems:
            blocked[task] = "\n".join(problems)
    return blocked


def read_results(path: Path) -> pa.Table:
    return pq.read_table(path, schema=RESULTS_SCHEMA)


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("evaluation device 'cuda' requested but no CUDA device is available")
    return device


def _include_paths(tasks: list[str], eval_cfg: EvaluationConfig, out_dir: Path,
                   solver: SolverConfig | None) -> dict[str, Path]:
    """The `--include_path` of each task: the generated local task, the packaged rule-scored
    math tasks, or the configured one.

    lmms-eval takes one include path per run; each task is its own run, so both can coexist.
    """
    paths: dict[str, Path] = {}
    for task in tasks:
        if task == LOCAL_TASK:
            data_file = build_local_task_data(out_dir / "local_task", LOCAL_TASK_SIZE, seed=0,
                                              solver=solver)
            paths[task] = write_local_task(out_dir / "include", data_file).parent.parent
        elif task == WORLD_TASK:
            data_file = build_world_task_data(out_dir / "world_task", solver or SolverConfig())
            paths[task] = write_world_task(out_dir / "include", data_file).parent.parent
        elif task in MATH_RULE_TASKS:
            paths[task] = MATH_RULES_DIR
        elif eval_cfg.include_path:
            paths[task] = Path(eval_cfg.include_path).expanduser().resolve()
    return paths


def _hub_env(eval_cfg: EvaluationConfig) -> dict[str, str]:
    if not hub_is_offline(eval_cfg.dataset_cache):
        return {}
    return {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            **cache_roots(eval_cfg.dataset_cache).env()}


def _rows_of_run(checkpoint: str, run) -> list[ResultRow]:
    if run.error is not None:
        return [_failed_row(checkpoint, run.task, run.seconds, run.error)]
    values = metric_values(run.results, run.task)
    if not values:
        return [_failed_row(checkpoint, run.task, run.seconds,
                            f"lmms-eval reported no numeric metric (see {run.output_dir})")]
    now = _now()
    return [ResultRow(checkpoint, run.task, v.metric, v.value, v.samples, run.seconds, OK, None,
                      now) for v in values]


def _failed_row(checkpoint: str, task: str, seconds: float, error: str) -> ResultRow:
    return ResultRow(checkpoint, task, None, None, None, seconds, FAILED, error, _now())


def _merge_results(path: Path, rows: list[ResultRow]) -> Path:
    """Replace this call's (checkpoint, task) pairs in the file, keep every other row."""
    new = pa.Table.from_pylist([asdict(r) for r in rows], schema=RESULTS_SCHEMA)
    if path.exists():
        old = read_results(path)
        replaced = {(r.checkpoint, r.task) for r in rows}
        keep = [(c, t) not in replaced for c, t in zip(old["checkpoint"].to_pylist(),
                                                      old["task"].to_pylist(), strict=True)]
        new = pa.concat_tables([old.filter(pa.array(keep, pa.bool_())), new])
    return atomic_write_parquet(path, new)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
