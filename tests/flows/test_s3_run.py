"""End to end into an s3:// run directory (moto's S3 on loopback): the tiny model trains there
from one machine, resumes from another with a fresh mirror, and is read back from the URL."""

import os
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from storage import RunStore

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke.yaml")


def _cli(*args: str, mirrors: Path) -> str:
    env = {**os.environ, "IREASONER_MIRRORS": str(mirrors)}
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _files(mirror: Path, *tops: str) -> dict[str, bytes]:
    return {p.relative_to(mirror).as_posix(): p.read_bytes()
            for top in tops for p in sorted((mirror / top).rglob("*")) if p.is_file()}


def test_training_into_s3_resumes_on_another_machine_and_is_read_from_the_url(
        s3_bucket, tiny_model_path, tiny_run, training_cli, tmp_path, monkeypatch):
    url = f"{s3_bucket}/smoke"
    overrides = [*tiny_run, "evaluation.every=0", f"storage.run_dir={url}"]
    machine_a, machine_b = tmp_path / "machine-a", tmp_path / "machine-b"
    monkeypatch.setenv("IREASONER_MIRRORS", str(machine_a))
    output = training_cli.finish(training_cli.start(SMOKE, [*overrides, "schedule.iterations=2"]))
    assert f"trained 2 iterations; artifacts in {url}" in output

    # Another machine: an empty mirror, everything (checkpoint 2 included) comes from S3.
    monkeypatch.setenv("IREASONER_MIRRORS", str(machine_b))
    output = training_cli.finish(training_cli.start(SMOKE, overrides, resume=True))
    assert f"trained 3 iterations; artifacts in {url}" in output
    (mirror_a,), (mirror_b,) = machine_a.iterdir(), machine_b.iterdir()
    tables = ("questions", "rollouts", "steps", "rewards", "groups", "metrics")
    written_by_a = _files(mirror_a, "stages", *tables)
    assert written_by_a and _files(mirror_b, "stages", *tables).items() >= written_by_a.items()
    assert not fsspec.filesystem("s3").exists(f"{url.removeprefix('s3://')}/LEASE")

    # A reader on a third machine sees the whole run; traces and rescoring need no checkpoints.
    machine_c = tmp_path / "machine-c"
    traces = _cli("traces", url, "--iteration", "3", mirrors=machine_c)
    assert "=== iteration 3 | image 0 |" in traces
    rescored = _cli("rescore", url, "--set", "rewards.alpha=1.0", "--out",
                    str(tmp_path / "rescored"), mirrors=machine_c)
    assert "rewards.r_sol" in rescored and (tmp_path / "rescored/rewards/000003.parquet").is_file()
    (mirror_c,) = machine_c.iterdir()
    assert not (mirror_c / "checkpoints").exists()
    store = RunStore(url, mirror=tmp_path / "machine-d").pull()
    assert store.completed_iterations() == 3 and [i for i, _ in store.checkpoints()] == [3]
    assert len(store.manifest()["resumed_at"]) == 1
