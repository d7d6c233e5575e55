"""Experiment trackers (`logging.trackers`: tensorboard, mlflow, wandb), fed from the run store.

The training flow calls `RunTracking.log_completed()` after each iteration. It logs what the
store holds and the trackers have not seen: every completed iteration's metrics row (by column
name, numbers only), a table of sample rollouts every `logging.samples_every` iterations, and
each evaluation result (`<run>/eval/<checkpoint>/results.parquet`). What each tracker has
logged is recorded in `<dir>/logged.json`, so a resumed run logs each iteration once and a
tracker added on resume catches up. A tracker that fails is named in a warning and retried at
the next call (its record is not advanced); training goes on.

Names: `train/<metrics column>`, `eval/<task>/<metric>` (step: the checkpoint's iteration, 0 for
the base model), `samples` (a table). Each package is imported only when its tracker is named
(the `track` extra installs them).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from ireasoner.config import Config, ConfigError, LoggingConfig
from ireasoner.inspect.artifacts import iteration_table
from storage import RunStore

log = logging.getLogger(__name__)

STATE_FILE = "logged.json"
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


class TrackerUnavailable(ConfigError):
    """A configured tracker's package is not installed (a config error: one clear line)."""


class Tracker(Protocol):
    def log_metrics(self, step: int, values: dict[str, float]) -> None: ...
    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None: ...
    def close(self) -> None: ...


def check_trackers(cfg: LoggingConfig) -> None:
    """Raise `TrackerUnavailable` naming every configured tracker whose package is missing
    (called before a run loads a model)."""
    import importlib.util

    missing = [name for name in cfg.trackers if importlib.util.find_spec(PACKAGES[name]) is None]
    if missing:
        raise TrackerUnavailable(
            f"logging.trackers names {', '.join(missing)}, not installed: "
            "pip install 'ireasoner[track]' (or remove it from logging.trackers)")


def tracking_dir(store: RunStore, cfg: LoggingConfig) -> Path:
    return Path(cfg.dir) if cfg.dir else store.root / "tracking"


class RunTracking:
    """The configured trackers of one run; `log_completed` brings each up to date."""

    def __init__(self, store: RunStore, config: Config, rewards_table: str,
                 metrics_table: str = "metrics") -> None:
        self.store, self.config = store, config
        self.cfg = config.logging
        self.rewards_table, self.metrics_table = rewards_table, metrics_table
        self.dir = tracking_dir(store, self.cfg)
        self.state: dict[str, dict[str, Any]] = {}
        self.trackers: dict[str, Tracker] = {}
        if not self.cfg.trackers:
            return
        check_trackers(self.cfg)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / STATE_FILE
        self.state = json.loads(path.read_text()) if path.is_file() else {}
        for name in self.cfg.trackers:
            state = self.state.setdefault(name, {"iteration": 0, "evaluations": []})
            self.trackers[name] = _OPEN[name](self, state)
        self._save()  # a new run id (MLflow, W&B) is kept before anything is logged

    def log_completed(self) -> int:
        """Log what the store holds and each tracker has not logged; returns the number of
        iterations logged (by the tracker furthest behind)."""
        done = self.store.completed_iterations()
        most = 0
        for name, tracker in self.trackers.items():
            state = self.state[name]
            start = state["iteration"]
            try:
                for iteration in range(start + 1, done + 1):
                    self._log_iteration(tracker, iteration)
                    state["iteration"] = iteration
                    most = max(most, iteration - start)
                self._log_evaluations(tracker, state)
            except Exception as err:  # noqa: BLE001 - a tracker never stops training
                log.warning("tracker %s failed (retried after the next iteration): %s",
                            name, err)
            finally:
                self._save()
        return most

    def close(self) -> None:
        for name, tracker in self.trackers.items():
            try:
                tracker.close()
            except Exception as err:  # noqa: BLE001
                log.warning("tracker %s failed to close: %s", name, err)
        self.trackers = {}

    def __enter__(self) -> RunTracking:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- what is logged ----------------------------------------------------------------
    def _log_iteration(self, tracker: Tracker, iteration: int) -> None:
        if self.store.has_table(self.metrics_table, iteration):
            row = self.store.read_table(self.metrics_table, iteration).to_pylist()[0]
            tracker.log_metrics(iteration, {f"train/{k}": v for k, v in numbers(row).items()
                                            if k != "iteration"})
        every = self.cfg.samples_every
        if every and iteration % every == 0 and self.store.has_table(self.rewards_table,
                                                                      iteration):
            rows = iteration_table(self.store, iteration, self.rewards_table,
                                   max_rows=self.cfg.samples)
            tracker.log_samples(iteration, [{"iteration": iteration, **r} for r in rows])

    def _log_evaluations(self, tracker: Tracker, state: dict[str, Any]) -> None:
        seen = set(state["evaluations"])
        for key, step, name, value in evaluation_results(self.store.root / "eval"):
            if key not in seen:
                tracker.log_metrics(step, {name: value})
                state["evaluations"].append(key)

    def _save(self) -> None:
        path = self.dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        os.replace(tmp, path)


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers (and booleans, as 0/1) of a row; lists and nulls are left out."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool | int | float) and math.isfinite(float(value)):
            out[key] = float(value)
    return out


def evaluation_results(eval_dir: Path) -> list[tuple[str, int, str, float]]:
    """(key, step, metric name, value) of each successful result under `<run>/eval`: step is
    the checkpoint's iteration (0 for the base model)."""
    out = []
    for path in sorted(eval_dir.glob("*/results.parquet")):
        frame = pl.read_parquet(path).filter((pl.col("status") == "ok")
                                             & pl.col("value").is_not_null())
        for r in frame.iter_rows(named=True):
            match = re.fullmatch(r"iter-(\d+)", r["checkpoint"])
            step = int(match.group(1)) if match else 0
            out.append((f"{r['checkpoint']}/{r['task']}/{r['metric']}", step,
                        f"eval/{r['task']}/{r['metric']}", float(r["value"])))
    return out


def _run_name(store: RunStore) -> str:
    return Path(store.location.rstrip("/")).name or "run"


# ---- the trackers -------------------------------------------------------------------------
class _TensorBoard:
    def __init__(self, run: RunTracking, state: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.dir / "tensorboard"))

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        self.writer.add_text("samples", _markdown_table(rows), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, run: RunTracking, state: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        cfg = run.cfg
        uri = cfg.mlflow_uri or f"sqlite:///{(run.dir / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        if state.get("run_id"):
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(cfg.experiment)
        if experiment is None:
            artifacts = None if cfg.mlflow_uri else (run.dir / "mlflow-artifacts").resolve()
            experiment_id = self.client.create_experiment(
                cfg.experiment, artifact_location=artifacts and artifacts.as_uri())
        else:
            experiment_id = experiment.experiment_id
        created = self.client.create_run(experiment_id, run_name=_run_name(run.store),
                                         tags={"run_dir": run.store.location})
        self.run_id = state["run_id"] = created.info.run_id
        params = _flatten(run.config.to_dict())
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # the store's limit per batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, step) for name, value in values.items()]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0]) if rows else []
        self.client.log_table(self.run_id, {c: [r.get(c) for r in rows] for c in columns},
                              artifact_file=f"samples/iteration-{step:06d}.json")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class _Wandb:
    def __init__(self, run: RunTracking, state: dict[str, Any]) -> None:
        import wandb

        cfg = run.cfg
        state.setdefault("run_id", wandb.util.generate_id())
        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.experiment, entity=cfg.wandb_entity, mode=cfg.wandb_mode,
            dir=str(run.dir), id=state["run_id"], resume="allow", name=_run_name(run.store),
            config=run.config.to_dict(), settings=wandb.Settings(silent=True, console="off"))
        # Evaluations arrive later than their iteration: every series steps on `iteration`.
        self.run.define_metric("iteration")
        self.run.define_metric("*", step_metric="iteration")

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        self.run.log({"iteration": step, **values})

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0]) if rows else []
        table = self.wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
        self.run.log({"iteration": step, "samples": table})

    def close(self) -> None:
        self.run.finish()


_OPEN = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _Wandb}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rollouts)"
    columns = list(rows[0])

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
