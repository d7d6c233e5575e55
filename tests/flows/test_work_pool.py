"""prefect.yaml as its users run it, for real: a Prefect server on loopback, `prefect deploy
--all`, one process worker; a deployment run executed by the worker, a second request on the
same run directory that waits for the first, and the evaluation a published checkpoint's event
triggers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterName,
)
from prefect.settings import PREFECT_API_URL, temporary_settings

from storage import RunStore

pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.fixture(scope="module")
def work_pool(prefect_server):
    """The project's deployments on a process pool, and a worker polling all of its queues."""
    prefect = str(prefect_server.bin / "prefect")
    created = prefect_server.run(prefect, "work-pool", "create", "ireasoner", "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = prefect_server.run(prefect, "--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    prefect_server.start(prefect, "worker", "start", "--pool", "ireasoner", "--limit", "4")
    return prefect_server


def _run(server, deployment: str, params: dict) -> str:
    """Starts a flow run of the deployment; returns its id."""
    done = server.run(str(server.bin / "prefect"), "deployment", "run", deployment,
                      "--params", json.dumps(params))
    assert done.returncode == 0, done.stdout + done.stderr
    return next(line.split()[-1] for line in done.stdout.splitlines() if "UUID" in line)


def _flow_runs(server, deployment: str | None = None):
    with temporary_settings({PREFECT_API_URL: server.api}), get_client(sync_client=True) as client:
        if deployment is None:
            return client.read_flow_runs()
        flow_name, name = deployment.split("/")
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])))


def _wait_final(server, run_ids: list[str], timeout: float = 900) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        runs = {str(r.id): r for r in _flow_runs(server) if str(r.id) in run_ids}
        if len(runs) == len(run_ids) and all(r.state and r.state.is_final()
                                             for r in runs.values()):
            return runs
        assert time.monotonic() < deadline, {i: r.state for i, r in runs.items()}
        time.sleep(2)


def _params(run_dir: Path, tiny_run: list[str], *extra: str) -> dict:
    return {"config": "configs/smoke.yaml", "run_dir": str(run_dir),
            "overrides": [*tiny_run, "schedule.iterations=2", *extra]}


def test_a_process_worker_runs_the_train_deployment(work_pool, tmp_path, tiny_model_path,
                                                    tiny_run):
    run_dir = tmp_path / "run"
    [run] = _wait_final(work_pool, [_run(work_pool, "ireasoner/train",
                                         _params(run_dir, tiny_run))]).values()
    assert run.state.is_completed(), run.state
    assert run.name == "smoke@run"
    assert RunStore(run_dir).completed_iterations() == 2


def test_a_second_run_on_the_same_directory_waits_for_the_first(work_pool, tmp_path,
                                                                tiny_model_path, tiny_run):
    run_dir = tmp_path / "shared"
    first = _run(work_pool, "ireasoner/train", _params(run_dir, tiny_run))
    second = _run(work_pool, "ireasoner/train", _params(run_dir, tiny_run))
    runs = _wait_final(work_pool, [first, second])
    # Without the per-directory limit the second fails at once on the run's lease lock.
    assert all(r.state.is_completed() for r in runs.values()), {i: r.state for i, r in runs.items()}
    assert RunStore(run_dir).completed_iterations() == 2


def test_a_published_checkpoint_triggers_its_evaluation(work_pool, tmp_path, tiny_model_path,
                                                       tiny_run):
    run_dir = tmp_path / "evaluated"
    trained = _run(work_pool, "ireasoner/train",
                   _params(run_dir, tiny_run, "evaluation.limit=2"))
    assert _wait_final(work_pool, [trained])[trained].state.is_completed()
    deadline = time.monotonic() + 600
    while True:  # the automation turns the event into a flow run of ireasoner-evaluate/evaluate
        runs = [r for r in _flow_runs(work_pool, "ireasoner-evaluate/evaluate")
                if r.parameters.get("run_dir") == str(run_dir)]
        if runs and all(r.state and r.state.is_final() for r in runs):
            break
        assert time.monotonic() < deadline, [r.state for r in runs]
        time.sleep(2)
    [evaluation] = runs
    assert evaluation.state.is_completed(), evaluation.state
    assert evaluation.parameters["checkpoint"] == "iter-000002"
    assert (run_dir / "eval" / "iter-000002" / "results.parquet").is_file()
