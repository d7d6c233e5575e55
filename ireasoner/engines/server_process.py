"""A vLLM OpenAI-compatible server as a child process: its command line, start, health, stop.

The server runs from its own interpreter (rollout.server.python, default `.venv-vllm`), so
vLLM's exact pins never meet this environment's. Its arguments are the in-process engine's
(`engine_args`), written as flags, so both engines serve the same model the same way.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from ireasoner.config import VLLMServerConfig

SERVER_VENV_PYTHON = Path(".venv-vllm") / "bin" / "python"
LOG_FILE = "vllm_server.log"
_STOP_GRACE_S = 20.0
_POLL_S = 0.5


class ServerError(RuntimeError):
    """The vLLM server cannot serve this run; the message names its URL and what was asked."""


def server_python(cfg: VLLMServerConfig) -> str:
    if cfg.python is not None:
        return cfg.python
    return str(SERVER_VENV_PYTHON.absolute()) if SERVER_VENV_PYTHON.is_file() else sys.executable


def cli_flags(args: Mapping[str, Any]) -> list[str]:
    """`vllm.LLM` keyword arguments as api_server flags: None and False are left at vLLM's
    default, True is a bare switch, a mapping is JSON."""
    flags: list[str] = []
    for key, value in args.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif isinstance(value, Mapping):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def server_command(python: str, engine_args: Mapping[str, Any], host: str, port: int,
                   extra_args: list[str]) -> list[str]:
    return [python, "-m", "vllm.entrypoints.openai.api_server", *cli_flags(engine_args),
            "--host", host, "--port", str(port), *extra_args]


def server_env(sleep_mode: bool) -> dict[str, str]:
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    if sleep_mode:
        env["VLLM_SERVER_DEV_MODE"] = "1"  # exposes /sleep and /wake_up
    return env


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """One started server. `url` answers once `wait_healthy` returned; `stop` ends it."""

    def __init__(self, command: list[str], env: dict[str, str], url: str, log_path: Path):
        self.command = command
        self.url = url
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = self.log_path.open("ab")
        # Its own process group: stopping it also stops the engine core it spawns.
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
        atexit.register(self.stop)  # a trainer that exits without close() leaves no server

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def died_message(self, doing: str) -> str:
        return (f"the vLLM server at {self.url} (pid {self.pid}) exited with code "
                f"{self.process.returncode} during {doing}; its log: {self.log_path}")

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerError(self.died_message("start-up"))
            try:
                if httpx.get(f"{self.url}/health", timeout=5.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(_POLL_S)
        self.stop()
        raise ServerError(f"the vLLM server at {self.url} was not healthy after {timeout_s:.0f} s "
                          f"(rollout.server.startup_timeout_s); its log: {self.log_path}")

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after a grace period."""
        if self.alive():
            _signal_group(self.process, "terminate")
            try:
                self.process.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, "kill")
                self.process.wait()
        self._log.close()


def start_server(command: list[str], env: dict[str, str], url: str, log_path: Path,
                 timeout_s: float) -> ServerProcess:
    server = ServerProcess(command, env, url, log_path)
    server.wait_healthy(timeout_s)
    return server


def _signal_group(process: subprocess.Popen, how: str) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM if how == "terminate" else signal.SIGKILL)
    except ProcessLookupError:
        pass
