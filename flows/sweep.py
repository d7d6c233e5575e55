"""`ireasoner sweep`: one training flow run per overlay through the `ireasoner/train`
deployment, executed by a work pool's workers, then one ablation table from the runs'
evaluations (Parquet and Markdown, like the paper's Table 2, the base model first).

GPU placement is the pool's: start one worker per GPU with `--limit 1` and
`CUDA_VISIBLE_DEVICES=<i>`, so each run holds one device (README). Re-running the sweep skips
finished runs, leaves queued or running ones alone and resumes the others. Each run evaluates
its last checkpoint itself (`evaluation.every` = its iterations, unless the configs set it);
the base model is evaluated once, through the `ireasoner-evaluate/evaluate` deployment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.deployments import run_deployment

from ireasoner.config import Config, ConfigError, load_config
from ireasoner.eval.ablation import ablation_table, to_markdown
from ireasoner.eval.runner import RESULTS_FILE
from ireasoner.eval.scheduled import BASE_LABEL
from storage import RunStore

log = logging.getLogger(__name__)

DEPLOYMENT = "ireasoner/train"
EVALUATE_DEPLOYMENT = "ireasoner-evaluate/evaluate"


@dataclass(frozen=True)
class SweepRun:
    name: str  # the overlay's stem: the table's row
    configs: list[str]
    overrides: list[str]
    run_dir: str
    config: Config

    @property
    def final_label(self) -> str:
        return RunStore(self.run_dir).checkpoint_dir(self.config.schedule.iterations).name


def plan(base: list[str], overlays: list[str], runs_root: str,
         overrides: list[str]) -> list[SweepRun]:
    """Every run's config, validated before anything is submitted (a bad key fails here)."""
    runs = []
    for overlay in overlays:
        name = Path(overlay).stem
        run_dir = f"{runs_root.rstrip('/')}/{name}"
        configs = [*base, overlay]
        cfg = load_config(configs, [*overrides, f"storage.run_dir={run_dir}"])
        every, iterations = cfg.evaluation.every, cfg.schedule.iterations
        if every and iterations % every:
            raise ConfigError(f"{name}: evaluation.every={every} never evaluates the last "
                              f"checkpoint (schedule.iterations={iterations}), which the "
                              "ablation table reports; unset it or make it divide the run")
        extra = [] if every else [f"evaluation.every={iterations}"]
        runs.append(SweepRun(name, configs, [*overrides, *extra], run_dir, cfg))
    if len({r.name for r in runs}) != len(runs):
        raise ConfigError("two overlays share a file name: their runs would share a directory")
    return runs


def finished(run: SweepRun) -> bool:
    store = RunStore(run.run_dir)
    return (store.manifest_path.exists()
            and store.completed_iterations() >= run.config.schedule.iterations
            and (store.root / "eval" / run.final_label / RESULTS_FILE).is_file())


def sweep(base: list[str], overlays: list[str], runs_root: str, overrides: list[str],
          out: str | None = None, wait: bool = True, poll_s: float = 5.0) -> Path | None:
    runs = plan(base, overlays, runs_root, overrides)
    active = _active_run_dirs()
    submitted = []
    for run in runs:
        if finished(run):
            log.info("%s: finished, skipped", run.name)
        elif run.run_dir in active:
            log.info("%s: already queued or running", run.name)
            submitted.append(active[run.run_dir])
        else:
            flow_run = run_deployment(DEPLOYMENT, timeout=0, parameters={
                "config": run.configs, "overrides": run.overrides, "run_dir": run.run_dir,
                "resume": True})
            log.info("%s: submitted flow run %s", run.name, flow_run.name)
            submitted.append(flow_run.id)
    if not wait:
        return None
    _wait(submitted, poll_s)
    if _base_results(runs) is None:  # once per sweep, on the first run's manifest model_path
        evaluation = run_deployment(EVALUATE_DEPLOYMENT, timeout=0, parameters={
            "run_dir": runs[0].run_dir, "checkpoint": BASE_LABEL})
        _wait([evaluation.id], poll_s)
    return write_table(runs, Path(out or runs_root))


def write_table(runs: list[SweepRun], out: Path) -> Path:
    results = {run.name: (_results(run.run_dir), run.final_label) for run in runs}
    table = ablation_table(results, _base_results(runs))
    out.mkdir(parents=True, exist_ok=True)
    table.write_parquet(out / "ablation.parquet")
    (out / "ablation.md").write_text(to_markdown(table) + "\n", encoding="utf-8")
    return out / "ablation.md"


def _base_results(runs: list[SweepRun]) -> pl.DataFrame | None:
    return next((_results(r.run_dir, BASE_LABEL) for r in runs
                 if (Path(r.run_dir) / "eval" / BASE_LABEL / RESULTS_FILE).is_file()), None)


def _results(run_dir: str, label: str | None = None) -> pl.DataFrame:
    paths = sorted((Path(run_dir) / "eval").glob(f"{label or '*'}/{RESULTS_FILE}"))
    if not paths:
        return pl.DataFrame()
    return pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed")


def _active_run_dirs() -> dict[str, object]:
    """run_dir -> flow-run id of the train deployment's runs that are not final yet."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=[DEPLOYMENT.split("/")[1]])))
    return {r.parameters.get("run_dir"): r.id for r in runs
            if r.state is not None and not r.state.is_final()}


def _wait(flow_run_ids: list, poll_s: float) -> None:
    pending = set(flow_run_ids)
    with get_client(sync_client=True) as client:
        while pending:
            for flow_run_id in list(pending):
                state = client.read_flow_run(flow_run_id).state
                if state is not None and state.is_final():
                    pending.discard(flow_run_id)
                    if not state.is_completed():
                        log.error("flow run %s ended %s", flow_run_id, state.name)
            if pending:
                time.sleep(poll_s)
