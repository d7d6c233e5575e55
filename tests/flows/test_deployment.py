"""The README's server sequence, for real: a Prefect server on loopback, `ireasoner serve`, and
`prefect deployment run ireasoner/train` on the tiny model, waited on until it completes."""

import json
import time

import pytest

from storage import RunStore

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_prefect_deployment_run_trains_the_smoke_config(prefect_server, tmp_path,
                                                        tiny_model_path, tiny_run):
    prefect_server.start(str(prefect_server.bin / "ireasoner"), "serve")
    run_dir = tmp_path / "run"
    params = {"config": "configs/smoke.yaml",
              "overrides": [*tiny_run, "schedule.iterations=2"], "run_dir": str(run_dir)}
    command = [str(prefect_server.bin / "prefect"), "deployment", "run", "ireasoner/train",
               "--params", json.dumps(params), "--watch", "--watch-timeout", "600"]
    deadline = time.monotonic() + 120
    while True:  # the deployment appears once `ireasoner serve` has registered it
        result = prefect_server.run(*command)
        if "not found" not in (result.stdout + result.stderr).lower():
            break
        assert time.monotonic() < deadline, result.stdout + result.stderr
        time.sleep(2)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Completed" in output, output
    assert RunStore(run_dir).completed_iterations() == 2
