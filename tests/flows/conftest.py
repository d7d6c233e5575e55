"""A real Prefect server on loopback for the deployment tests (one per test module)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class PrefectServer:
    api: str
    env: dict[str, str]
    bin: Path = BIN  # the venv's scripts: prefect, ireasoner

    def start(self, *command: str) -> subprocess.Popen:
        """A long-lived Prefect process (a worker, `ireasoner serve`), stopped with the server."""
        return subprocess.Popen(list(command), cwd=REPO, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def run(self, *command: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, seconds: float) -> None:
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


def stop(process: subprocess.Popen) -> None:
    # SIGINT: a Prefect runner left without its server ignores SIGTERM and retries.
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect")),
           "PREFECT_API_URL": api, "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}
    server = PrefectServer(api, env)
    process = server.start(str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                           "--port", str(port))
    children: list[subprocess.Popen] = []
    server.start = _tracking(server.start, children)
    try:
        wait_healthy(api, process, 180)
        yield server
    finally:
        for child in children:
            stop(child)
        stop(process)


def _tracking(start, children):
    def tracked(*command: str) -> subprocess.Popen:
        child = start(*command)
        children.append(child)
        return child
    return tracked
