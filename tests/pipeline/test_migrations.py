"""Runs written by an earlier version (artifact schema v1: the commit before the trainers got
their own folders) are migrated, then read and resumed as new ones. The fixtures under
tests/fixtures/legacy-v1/ are two-iteration tiny-model runs that commit f923e61 wrote, one per
trainer (LoRA rank 2, no compaction)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from ireasoner.inspect.queries import NotInRun
from ireasoner.inspect.traces import format_traces
from ireasoner.pipeline import migrations
from ireasoner.pipeline.run import run_config
from ireasoner.pipeline.tables import QUESTIONS, SCHEMA_VERSION
from ireasoner.trainers.registry import trainer_spec
from storage import ResumeRefused, RunStore

REPO = Path(__file__).resolve().parents[2]
LEGACY = REPO / "tests" / "fixtures" / "legacy-v1"


def _copy(kind: str, tmp_path: Path) -> Path:
    run = tmp_path / kind
    shutil.copytree(LEGACY / kind, run)
    return run


def _frame(run: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(str(run / table / "*.parquet")).sort(pl.all())


def test_readers_name_the_command_that_upgrades_an_old_run(tmp_path):
    run = _copy("ireasoner", tmp_path)
    with pytest.raises(ResumeRefused, match=f"ireasoner migrate {run}"):
        format_traces(RunStore(run))


@pytest.mark.parametrize("kind", ["ireasoner", "ivr_r1"])
def test_migration_moves_the_advantage_and_gives_each_trainer_its_metrics(kind, tmp_path, capsys):
    run = _copy(kind, tmp_path)
    before = {t: _frame(run, t) for t in ("questions", "rollouts", "metrics")}
    v1_rewards = _frame(run, "rewards") if kind == "ireasoner" else None
    assert main(["migrate", str(run)]) == 0
    assert f"migrated from artifact schema v1 to v{SCHEMA_VERSION}" in capsys.readouterr().out
    store = RunStore(run)
    manifest = store.manifest()
    trainer = trainer_spec(kind)
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["migrated_from"] == 1
    assert store.stages() == trainer.stage_names and store.completed_iterations() == 2
    questions = _frame(run, "questions")
    assert questions.columns == QUESTIONS.schema.names  # v3: a null rationale
    assert questions["rationale"].is_null().all()
    assert questions.drop("rationale").equals(before["questions"])
    assert _frame(run, "rollouts").equals(before["rollouts"])
    metrics = _frame(run, "metrics")
    assert metrics.columns == trainer.metrics.schema.names
    for column in set(metrics.columns) & set(before["metrics"].columns):  # values kept
        assert metrics[column].equals(before["metrics"][column]), column
    if kind == "ireasoner":
        rewards, updates = _frame(run, "rewards"), _frame(run, "updates")
        assert "advantage" not in rewards.columns
        assert rewards.equals(v1_rewards.drop("advantage"))
        moved = updates.join(v1_rewards, left_on=["source_iteration", "image_index",
                                                  "rollout_index"],
                             right_on=["iteration", "image_index", "rollout_index"])
        assert moved.height == v1_rewards.height == 2 * 3
        assert (moved["advantage"] == moved["advantage_right"]).all()
        assert ((moved["reward"] - moved["baseline"] - moved["advantage"]).abs() < 1e-12).all()
        assert "r_ans 0." in format_traces(store, iteration=2)
    assert main(["migrate", str(run)]) == 0  # a second time: nothing to do
    assert "already at artifact schema" in capsys.readouterr().out


def test_a_migration_killed_half_way_finishes_when_run_again(tmp_path, monkeypatch):
    run, clean = _copy("ireasoner", tmp_path / "a"), _copy("ireasoner", tmp_path / "b")
    trainer = trainer_spec("ireasoner")
    migrations.migrate_run(RunStore(clean), trainer)
    rewrite, calls = migrations._rewrite, []

    def killed_after_one_file(path, table):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(path)
        rewrite(path, table)
    monkeypatch.setattr(migrations, "_rewrite", killed_after_one_file)
    with pytest.raises(KeyboardInterrupt):
        migrations.migrate_run(RunStore(run), trainer)
    monkeypatch.undo()
    assert RunStore(run).manifest()["schema_version"] == 1  # written last: not migrated yet
    assert migrations.migrate_run(RunStore(run), trainer)
    for table in ("rewards", "updates", "metrics", "steps", "groups"):
        assert _frame(run, table).equals(_frame(clean, table)), table


def _train(*args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "train", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ireasoner", "ivr_r1"])
def test_a_v1_run_resumes_with_only_its_run_directory_and_a_longer_schedule(
        kind, tmp_path, tiny_model_path):
    """No config given: the run's own config continues, migrated first."""
    run = _copy(kind, tmp_path)
    output = _train("--run-dir", str(run), "--resume", "--set", "schedule.iterations=3")
    assert "trained 3 iterations" in output
    store = RunStore(run)
    assert store.manifest()["schema_version"] == SCHEMA_VERSION
    assert run_config(store).schedule.iterations == 3
    trainer = trainer_spec(kind)
    for table in trainer.all_tables():
        if table.name != "skips":
            schema = pq.read_schema(store.table_path(table.name, 3))
            assert schema.equals(table.schema, check_metadata=False), table.name
    assert [i for i, _ in store.checkpoints()] == [3]


@pytest.mark.slow
def test_the_restructured_code_scores_the_v1_run_again_exactly(tmp_path,
                                                                          tiny_model_path):
    """From a v1 run's own questions and rollouts, the new code scores as the v1 code did (its
    legacy values included) and feeds the update the same rewards, baselines and advantages:
    steps, rewards and groups bit for bit. Sampling is not compared: the transformers engine
    draws each sequence from its own seeded stream since 7cf0b39. Nor is what the update made
    of them: the adapters and losses were bitwise equal on the CPU that wrote the fixture, but
    another CPU's float32 kernels round differently and AdamW's sign-like first steps amplify
    that (AVX-512 box, 2026-12-06: a quarter of the Solver's LoRA B entries flipped sign and
    iteration 2's loss read 1.614 against 1.488). The update's math is pinned by the per-rollout
    reference test (tests/policy/test_update.py) and its determinism by the kill -9 + resume
    tests."""
    legacy = _copy("ireasoner", tmp_path / "legacy")
    assert main(["migrate", str(legacy)]) == 0
    redo = tmp_path / "redo"
    shutil.copytree(legacy, redo)
    shutil.rmtree(redo / "checkpoints")  # back to fresh adapters: prepare writes checkpoint 0
    for table in ("steps", "rewards", "groups", "updates", "metrics"):
        shutil.rmtree(redo / table)
    for iteration in (1, 2):
        for stage in ("score", "update"):
            (redo / "stages" / f"{iteration:06d}" / f"{stage}.json").unlink()
    _train("--run-dir", str(redo), "--resume")
    for table in ("questions", "rollouts"):  # read, not sampled again
        assert _frame(redo, table).equals(_frame(legacy, table)), table
    for table in ("steps", "rewards", "groups"):
        assert _frame(redo, table).equals(_frame(legacy, table)), table
    keys = ["iteration", "image_index", "rollout_index"]
    ours = _frame(redo, "updates").filter(pl.col("role") == "solver")
    theirs = _frame(legacy, "updates").join(ours, on=keys, suffix="_new")
    assert theirs.height == ours.height == 2 * 3
    assert (theirs["reward"] == theirs["reward_new"]).all()
    # v1 stored r - b, so the migration's b = r - (r - b) may differ in the last bit.
    for column in ("advantage", "baseline"):
        assert ((theirs[column] - theirs[f"{column}_new"]).abs() < 1e-15).all(), column


def test_a_run_from_a_newer_version_is_refused(tmp_path):
    run = _copy("ireasoner", tmp_path)
    RunStore(run).update_manifest(schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(ResumeRefused, match="newer version"):
        migrations.migrate_run(RunStore(run), trainer_spec("ireasoner"))
    with pytest.raises((ResumeRefused, NotInRun)):
        format_traces(RunStore(run))
