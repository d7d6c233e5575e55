"""The README's server sequence, for real: a Prefect server on loopback, `ireasoner serve`, and
`prefect deployment run ireasoner/train` on the tiny model, waited on until it completes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from storage import RunStore

pytestmark = [pytest.mark.slow, pytest.mark.server]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the Prefect server exited"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"no healthy Prefect server at {url} after {seconds} s")


def _stop(process: subprocess.Popen) -> None:
    # SIGINT: a Prefect runner left without its server ignores SIGTERM and retries.
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_prefect_deployment_run_trains_the_smoke_config(tmp_path, tiny_model_path, tiny_run):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        _wait_healthy(api, server, 120)
        worker = subprocess.Popen([str(BIN / "ireasoner"), "serve"], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run_dir = tmp_path / "run"
        params = {"config": "configs/smoke.yaml",
                  "overrides": [*tiny_run, "schedule.iterations=2"], "run_dir": str(run_dir)}
        command = [str(BIN / "prefect"), "deployment", "run", "ireasoner/train",
                   "--params", json.dumps(params), "--watch", "--watch-timeout", "600"]
        deadline = time.monotonic() + 120
        while True:  # the deployment appears once `ireasoner serve` has registered it
            result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                                    timeout=900)
            if "not found" not in (result.stdout + result.stderr).lower():
                break
            assert time.monotonic() < deadline, result.stdout + result.stderr
            time.sleep(2)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "Completed" in output, output
        assert RunStore(run_dir).completed_iterations() == 2
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)
