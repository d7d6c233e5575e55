"""One lmms-eval task run as a subprocess, and its results JSON read back as metric values.

A subprocess per task keeps a crash (an import error, an out-of-memory, a dataset failure) to
that task. lmms-eval exits 0 even when the model or the task fails, so success is judged by the
results file it writes, never by the exit code.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Backend = Literal["vllm", "transformers", "openai"]
LOG_FILE = "lmms_eval.log"
_ERROR_TAIL_CHARS = 2000
_ERROR_LINE = re.compile(r"^\S*(Error|Exception)\b.*$|^.*\| ERROR +\|.*$", re.MULTILINE)


@dataclass(frozen=True)
class TaskRun:
    task: str
    output_dir: Path
    seconds: float
    results: dict | None  # lmms-eval's results JSON; None when it wrote none
    error: str | None


@dataclass(frozen=True)
class MetricValue:
    metric: str  # "<subtask>/<metric>" for the members of a group
    value: float
    samples: int | None


def model_spec(backend: Backend, model_path: str, device: str, max_new_tokens: int,
               pixel_budget: tuple[int, int] | None = None,
               extra: dict[str, str] | None = None) -> tuple[str, str]:
    """lmms-eval's `--model` and `--model_args` for a local checkpoint. `pixel_budget`
    (min_pixels, max_pixels) reaches the transformers class only: lmms-eval's vllm class would
    hand unknown arguments to vLLM itself."""
    if "," in model_path:
        raise ValueError(f"lmms-eval cannot take a model path containing ',': {model_path}")
    if backend == "openai":
        # model_path is then the server's model name and extra carries base_url (ServedModel).
        args = {"model": model_path, "api_key": "EMPTY"}
        name = "openai"
    elif backend == "vllm":
        # lmms-eval's vllm class decodes max(task's, its own) tokens: set its own to the budget.
        # lmms-eval's vllm class trusts a checkpoint's own code unless told not to.
        args = {"model": model_path, "max_new_tokens": str(max_new_tokens),
                "trust_remote_code": "False"}
        name = "vllm"
    else:
        # device_map must be explicit: lmms-eval's default ("auto") moves inputs to cuda.
        args = {"pretrained": model_path, "device": device, "device_map": device}
        if pixel_budget is not None:
            args.update(min_pixels=str(pixel_budget[0]), max_pixels=str(pixel_budget[1]))
        name = "qwen2_5_vl"
    args.update(extra or {})
    return name, ",".join(f"{key}={value}" for key, value in args.items())


def lmms_command(task: str, model: str, model_args: str, max_new_tokens: int, output_dir: Path,
                 batch_size: int, limit: int | None, include_path: Path | None,
                 temperature: float = 0.0) -> list[str]:
    # Greedy (sampled only for a sampled task such as ireasoner_world) with one token budget
    # for every task and backend: --gen_kwargs overrides the task YAMLs' own settings.
    command = [
        sys.executable, "-m", "lmms_eval",
        "--model", model, "--model_args", model_args, "--tasks", task,
        "--gen_kwargs", f"temperature={temperature:g},max_new_tokens={max_new_tokens}",
        "--batch_size", str(batch_size), "--output_path", str(output_dir), "--log_samples",
        "--verbosity", "INFO",
    ]
    if limit is not None:
        command += ["--limit", str(limit)]
    if include_path is not None:
        command += ["--include_path", str(include_path)]
    return command


def run_task(task: str, command: list[str], output_dir: Path, env: dict[str, str],
             timeout_s: float | None = None) -> TaskRun:
    """Run one lmms-eval task into a fresh `output_dir` (its log goes to lmms_eval.log there)."""
    if output_dir.exists():
        shutil.rmtree(output_dir)  # an older run's results file must not pass for this one's
    output_dir.mkdir(parents=True)
    log_path = output_dir / LOG_FILE
    start = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        try:
            completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       cwd=output_dir, timeout=timeout_s, check=False)
            returncode: int | None = completed.returncode
        except subprocess.TimeoutExpired:
            returncode = None
    seconds = time.perf_counter() - start
    results_files = sorted(output_dir.rglob("*_results.json"))
    if results_files:
        return TaskRun(task, output_dir, seconds, _read_json(results_files[-1]), None)
    if returncode is None:
        error = f"lmms-eval timed out after {timeout_s} s"
    else:
        error = f"lmms-eval wrote no results (exit code {returncode}): {failure_summary(log_path)}"
    return TaskRun(task, output_dir, seconds, None, error)


def failure_summary(log_path: Path) -> str:
    """The error lines of an lmms-eval log, or its tail when none is recognisable."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    lines = [m.group(0).strip() for m in _ERROR_LINE.finditer(text)]
    summary = "\n".join(dict.fromkeys(lines)) if lines else text
    return summary[-_ERROR_TAIL_CHARS:] + f"\n(full log: {log_path})"


def metric_values(results: dict, task: str) -> list[MetricValue]:
    """Numeric metrics of every entry lmms-eval reports for `task` (a group lists its members).

    Keys look like "exact_match,none"; the filter suffix is kept only when it is not "none", and
    stderr entries are left out.
    """
    samples = results.get("n-samples", {})
    values = []
    for entry, metrics in results.get("results", {}).items():
        prefix = "" if entry == task else f"{entry}/"
        count = samples.get(entry, {}).get("effective")
        for key, value in metrics.items():
            metric, _, filter_name = key.partition(",")
            if "_stderr" in metric or not _is_number(value):
                continue
            name = metric if filter_name in ("", "none") else f"{metric},{filter_name}"
            values.append(MetricValue(prefix + name, float(value), count))
    return values


def subprocess_env(overrides: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
