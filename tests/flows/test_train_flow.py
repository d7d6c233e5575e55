"""End to end on the tiny model: the Prefect flow, its artifacts, exact resume after kill -9,
the refusals, and offline rescoring."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from ireasoner.commands.rescore import rescore_run
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore, compact_run
from tests.flows.same_run import assert_same_run

TABLES = {table.name: table.schema for table in trainer_spec("ireasoner").all_tables()}

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke.yaml")
PER_ITERATION = ("questions", "rollouts", "steps", "rewards", "groups", "updates", "metrics")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_path, tiny_run, training_cli):
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    training_cli.finish(training_cli.start(SMOKE, [*tiny_run, f"storage.run_dir={run}"]))
    return run


def test_a_smoke_run_writes_every_artifact_with_its_schema(finished_run):
    store = RunStore(finished_run)
    assert store.completed_iterations() == 3
    for table in PER_ITERATION:
        for iteration in (1, 2, 3):
            schema = pq.read_schema(store.table_path(table, iteration))
            assert schema.equals(TABLES[table], check_metadata=False), table
    rewards = pl.read_parquet(str(finished_run / "rewards" / "*.parquet"))
    assert rewards.height == 3 * 3
    assert rewards["r_sol"].is_finite().all()
    metrics = pl.read_parquet(str(finished_run / "metrics" / "*.parquet")).sort("iteration")
    assert metrics["proposer_updated"].to_list() == [False, True, False]
    assert metrics["solver_loss"].is_not_null().all()
    # The columns every trainer fills alike: one question and 3 rollouts per iteration.
    assert metrics["images"].to_list() == [1.0] * 3 and metrics["rollouts"].to_list() == [3.0] * 3
    assert (metrics["questions_ok"] + metrics["questions_fallback"]
            + metrics["questions_skipped"]).to_list() == [1.0] * 3
    answered = rewards.group_by("iteration").agg(pl.col("answer").is_not_null().mean())
    assert metrics["answer_rate"].to_list() == answered.sort("iteration")["answer"].to_list()
    assert (finished_run / "skips" / "000000.parquet").is_file()
    # The update stage records each example's advantage: r_sol - b, b from the role's EMA.
    updates = pl.read_parquet(str(finished_run / "updates" / "*.parquet"))
    solver = updates.filter(pl.col("role") == "solver").join(
        rewards, on=["iteration", "image_index", "rollout_index"])
    assert solver.height == 3 * 3 and (solver["reward"] == solver["r_sol"]).all()
    assert ((solver["reward"] - solver["baseline"] - solver["advantage"]).abs() < 1e-12).all()
    assert updates.filter(pl.col("role") == "proposer")["iteration"].unique().to_list() in ([], [2])
    manifest = store.manifest()
    assert manifest["model_path"] and manifest["config_fingerprint"]
    # Only the latest checkpoint is kept by default (keep_checkpoints_every = 0).
    assert [i for i, _ in store.checkpoints()] == [3]


def test_the_flow_evaluates_the_solver_every_e_iterations(finished_run):
    store = RunStore(finished_run)
    assert store.stage_info(3, "evaluate")["status"] == "ok"
    results = pl.read_parquet(str(finished_run / "eval" / "iter-000003" / "results.parquet"))
    assert set(results["task"]) == {"ireasoner_synth"} and (results["status"] == "ok").all()
    assert not store.stage_done(2, "evaluate")


def test_evaluate_cli_compares_with_the_base_and_evaluates_nothing_twice(finished_run):
    command = [sys.executable, "-m", "flows.cli", "evaluate", str(finished_run),
               "--checkpoint", "base", "--tasks", "ireasoner_synth", "--limit", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "exact_match" in first.stdout and "| MathVista |" in first.stdout
    assert (finished_run / "eval" / "base" / "results.parquet").is_file()
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already evaluated" in again.stdout


def test_kill_9_during_a_stage_then_resume_gives_identical_results(finished_run, tiny_run, tmp_path,
                                                                   training_cli):
    # This run compacts after every iteration (finished_run never does): iteration 2's
    # Proposer update reads iteration 1 back from its chunk, and no number may change.
    run = tmp_path / "run"
    overrides = [*tiny_run, f"storage.run_dir={run}", "storage.compact_every=1"]
    process = training_cli.start(SMOKE, overrides)
    # Killed during iteration 2's solve stage, right after its propose stage completed.
    training_cli.kill_when(process, run / "stages" / "000002" / "propose.json")
    assert not (run / "stages" / "000002" / "update.json").exists()
    assert (run / "rewards" / "000001-000001.parquet").is_file()

    output = training_cli.finish(training_cli.start(SMOKE, overrides, resume=True))
    assert "trained 3 iterations" in output
    # The default, published update: one Solver step per rollout (3 per iteration here), each
    # with its own b; resumed mid-run, the steps go on from the checkpoint's count.
    solver = pl.from_arrow(RunStore(run).read_table("updates", 3)).filter(
        pl.col("role") == "solver")
    assert solver["step"].to_list() == [7, 8, 9] and solver["baseline"].n_unique() == 3
    for table in PER_ITERATION:
        assert not (run / table / "000003.parquet").exists(), f"{table} not compacted"
    assert_same_run(run, finished_run, PER_ITERATION, 3)


def test_resume_with_a_training_change_is_refused_naming_the_key(finished_run, tiny_run,
                                                                training_cli):
    process = training_cli.start(
        SMOKE, [*tiny_run, f"storage.run_dir={finished_run}", "rewards.alpha=1.0"], resume=True)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2
    assert "rewards.alpha: 0.7 -> 1.0" in output and "--run-dir" in output


def test_training_into_an_existing_run_without_resume_is_refused(finished_run, tiny_run,
                                                                 training_cli):
    process = training_cli.start(SMOKE, [*tiny_run, f"storage.run_dir={finished_run}"])
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2 and "--resume" in output


def test_rescoring_with_the_original_config_reproduces_the_stored_rewards(finished_run, tmp_path):
    # Rescored from a copy with iterations 1 and 2 compacted into chunks, 3 left as it was.
    compacted = tmp_path / "compacted"
    shutil.copytree(finished_run, compacted)
    assert compact_run(RunStore(compacted), 2)
    rescore_run(compacted, [], [], tmp_path / "same")
    for table in ("rewards", "groups", "steps"):
        for iteration in (1, 2, 3):
            stored = pq.read_table(RunStore(finished_run).table_path(table, iteration))
            again = pq.read_table(RunStore(tmp_path / "same").table_path(table, iteration))
            assert again.equals(stored), f"{table} of iteration {iteration} differs"


def test_rescoring_under_another_config_changes_rewards_and_reports_it(finished_run, tmp_path):
    report = rescore_run(finished_run, [], ["rewards.lambda_mode=answer_only"], tmp_path / "a")
    rescored = pl.read_parquet(str(tmp_path / "a" / "rewards" / "*.parquet"))
    assert (rescored["r_sol"] == rescored["r_ans"]).all()  # lambda = 0: r_sol = r_ans
    assert "rewards.r_sol" in report and "groups.entropy" in report


def test_rescoring_refuses_keys_it_cannot_apply_offline(finished_run, tmp_path):
    with pytest.raises(ValueError, match="optimization.lr"):
        rescore_run(finished_run, [], ["optimization.lr=0.5"], tmp_path / "b")
