"""End to end on the tiny model (2 iterations, every checkpoint kept): a full disk during a
table write and during a checkpoint write fails with one clear line and nothing partial, and
`--resume` once space is back ends identical to an uninterrupted run; a truncated Parquet or
safetensors file makes `--resume` name the file and its stage, and `ireasoner repair` then
`--resume` ends identical too. The disk fills at the OS boundary (tests/fixtures/enospc.c)."""

import shutil
from pathlib import Path

import pytest

from flows.cli import main
from tests.flows.same_run import assert_same_run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke.yaml")
TABLES = ("questions", "rollouts", "steps", "rewards", "groups", "updates", "metrics")
ITERATIONS = 2


def _overrides(tiny_run, run: Path) -> list[str]:
    return [*tiny_run, f"schedule.iterations={ITERATIONS}", "storage.keep_checkpoints_every=1",
            f"storage.run_dir={run}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_path, tiny_run, training_cli):
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    training_cli.finish(training_cli.start(SMOKE, _overrides(tiny_run, run)))
    return run


def _assert_same_as(run: Path, reference: Path) -> None:
    assert_same_run(run, reference, TABLES, ITERATIONS)


def _fails(process) -> str:
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 2, output
    return output


def _no_temporaries(run: Path) -> None:
    assert [p for p in run.rglob("*") if p.name.endswith((".tmp", ".old"))] == []


@pytest.mark.parametrize("match, after, written", [
    # iteration 2's score stage: its rewards table, the disk full from the first byte
    ("/rewards/.000002.parquet.", 0, "rewards/000002.parquet"),
    # iteration 2's update stage: its checkpoint, full after 5 kB of the first tensor file
    ("/checkpoints/.iter-000002.", 5000, "checkpoints/iter-000002"),
])
def test_a_full_disk_fails_clearly_leaves_nothing_partial_and_resume_completes(
        match, after, written, reference, tiny_run, training_cli, enospc_preload, tmp_path):
    run = tmp_path / "run"
    overrides = _overrides(tiny_run, run)
    output = _fails(training_cli.start(SMOKE, overrides, env=enospc_preload(match, after)))
    line = f"ireasoner: error: cannot write {run}/{written}: the disk is full"
    assert line in output, output
    assert "Traceback" not in output  # not retried either: tests/flows/test_retries.py
    assert not (run / written).exists()
    _no_temporaries(run)
    assert not (run / "stages" / "000002" / "update.json").exists()

    training_cli.finish(training_cli.start(SMOKE, overrides, resume=True))  # space is back
    _assert_same_as(run, reference)


@pytest.mark.parametrize("damaged, stage", [
    ("rewards/000002.parquet", "score"),
    ("checkpoints/iter-000002/optimizer/solver.safetensors", "update"),
])
def test_a_truncated_file_is_named_on_resume_and_repair_then_resume_completes(
        damaged, stage, reference, tiny_run, training_cli, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    path = run / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    overrides = _overrides(tiny_run, run)

    output = _fails(training_cli.start(SMOKE, overrides, resume=True))
    assert f"run {run}: iteration 2 stage '{stage}': {run}/{damaged} is truncated" in output
    assert f"run: ireasoner repair {run}" in output and "Traceback" not in output

    assert main(["repair", str(run)]) == 0
    report = capsys.readouterr().out
    assert f"redo from iteration 2 stage '{stage}'" in report, report
    [aside] = (run / "damaged").iterdir()
    assert (aside / damaged).is_file() and not path.exists()

    training_cli.finish(training_cli.start(SMOKE, overrides, resume=True))
    _assert_same_as(run, reference)
    assert main(["repair", str(run)]) == 0
    assert "no damaged file found" in capsys.readouterr().out
