"""Servers the CLI may start (Prefect's API, the runner webserver of `ireasoner serve`) bind
loopback unless the environment says otherwise."""

import subprocess
import sys

import pytest

from flows.cli import LOOPBACK_SETTINGS, main


def _prefect_hosts() -> tuple[str, str]:
    """The hosts Prefect would bind, read by Prefect itself in a fresh process."""
    script = ("from prefect.settings import Settings; s = Settings(); "
              "print(s.server.api.host, s.runner.server.host)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], out[1]


def test_the_cli_makes_prefect_servers_bind_loopback(monkeypatch, capsys):
    for setting in LOOPBACK_SETTINGS:
        monkeypatch.delenv(setting, raising=False)
    assert main(["config"]) == 0
    capsys.readouterr()
    assert _prefect_hosts() == ("127.0.0.1", "127.0.0.1")  # the runner's default: localhost


def test_a_host_set_in_the_environment_is_kept(monkeypatch, capsys):
    monkeypatch.setenv("PREFECT_SERVER_API_HOST", "10.0.0.5")
    monkeypatch.delenv("PREFECT_RUNNER_SERVER_HOST", raising=False)
    assert main(["config"]) == 0
    capsys.readouterr()
    assert _prefect_hosts() == ("10.0.0.5", "127.0.0.1")


@pytest.mark.parametrize("path", ["flows", "ireasoner", "scripts"])
def test_no_project_code_binds_every_interface(path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / path
    offenders = [str(f) for f in root.rglob("*") if f.suffix in (".py", ".sh")
                 and "0.0.0.0" in f.read_text(encoding="utf-8", errors="ignore")]
    assert offenders == []
