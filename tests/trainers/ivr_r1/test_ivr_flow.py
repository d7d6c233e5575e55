"""IVR-R1 end to end on the tiny model through the training flow: critiques and rectified
rollouts with their links, and exact resume after kill -9."""

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

from ireasoner.trainers.registry import trainer_spec
from storage import RunStore

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
SMOKE = str(REPO / "configs" / "ivr_r1_smoke.yaml")
TABLES = {table.name: table.schema for table in trainer_spec("ivr_r1").all_tables()}
TINY = ["schedule.iterations=2", "solver.max_new_tokens=32", "ivr.critique_max_new_tokens=16",
        "ivr.rectify_rounds=2", "data.synthetic_count=4"]
PER_ITERATION = ("questions", "rollouts", "ivr_rewards", "critiques", "rectified", "updates",
                 "metrics")


def _overrides(run: Path, *extra: str) -> list[str]:
    return [*TINY, *extra, f"storage.run_dir={run}"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_path, training_cli):
    run = tmp_path_factory.mktemp("ivr") / "run"
    training_cli.finish(training_cli.start(SMOKE, _overrides(run)))
    return run


def test_an_ivr_run_writes_critiques_and_rectifications_linked_to_their_rollouts(finished_run):
    store = RunStore(finished_run)
    assert store.completed_iterations() == 2
    for table in PER_ITERATION:
        for iteration in (1, 2):
            schema = pq.read_schema(store.table_path(table, iteration))
            assert schema.equals(TABLES[table], check_metadata=False), table
    rewards = pl.read_parquet(str(finished_run / "ivr_rewards" / "*.parquet"))
    critiques = pl.read_parquet(str(finished_run / "critiques" / "*.parquet"))
    rectified = pl.read_parquet(str(finished_run / "rectified" / "*.parquet"))
    key = ["iteration", "image_index", "rollout_index"]
    assert rewards.height == 2 * 3 and (rewards["label_source"] == "dataset").all()
    eroded = rewards.filter(pl.col("eroded")).select(key).sort(key)
    assert critiques.height > 0 and critiques.select(key).sort(key).equals(eroded)
    assert rectified.height > 0
    assert rectified.join(critiques, on=key, how="anti").height == 0  # every one has a critique
    assert set(rectified["round"].to_list()) <= {1, 2}
    metrics = pl.read_parquet(str(finished_run / "metrics" / "*.parquet")).sort("iteration")
    assert metrics["solver_loss"].is_not_null().all()
    assert metrics["erosion_rate"].to_list() == [
        float(rewards.filter(pl.col("iteration") == i)["eroded"].mean()) for i in (1, 2)]
    assert "r_step" not in metrics.columns  # iReasoner's own columns are not IVR-R1's
    # GRPO's advantages, as the update recorded them: normalised within each group, the kept
    # rectifications included (off-policy rows).
    updates = pl.read_parquet(str(finished_run / "updates" / "*.parquet"))
    assert updates.filter(~pl.col("off_policy")).height == rewards.height
    assert updates.filter(pl.col("off_policy")).height == rectified["kept"].sum()
    for (_, _), group in updates.group_by("iteration", "image_index"):
        assert abs(group["advantage"].sum()) < 1e-6
        assert (group["baseline"] - group["reward"].mean()).abs().max() < 1e-6


def test_kill_9_during_localise_then_resume_gives_identical_tables_and_weights(
        finished_run, tmp_path, training_cli):
    run = tmp_path / "run"
    process = training_cli.start(SMOKE, _overrides(run))
    # Killed during iteration 2's localise stage, right after its score stage completed.
    training_cli.kill_when(process, run / "stages" / "000002" / "score.json")
    assert not (run / "stages" / "000002" / "update.json").exists()

    output = training_cli.finish(training_cli.start(SMOKE, _overrides(run), resume=True))
    assert "trained 2 iterations" in output
    for table in ("ivr_rewards", "critiques", "rectified"):
        for iteration in (1, 2):
            resumed = pq.read_table(RunStore(run).table_path(table, iteration))
            original = pq.read_table(RunStore(finished_run).table_path(table, iteration))
            assert resumed.equals(original), f"{table} of iteration {iteration} differs"
    adapter = Path("checkpoints") / "iter-000002" / "adapters" / "solver" / "adapter_model.safetensors"
    resumed, original = load_file(str(run / adapter)), load_file(str(finished_run / adapter))
    assert resumed.keys() == original.keys()
    assert all((resumed[k] == original[k]).all() for k in original)


def test_pseudo_labels_come_from_the_proposer_and_the_dominant_boxed_answer(tmp_path,
                                                                          tiny_model_path,
                                                                          training_cli):
    run = tmp_path / "pseudo"
    overrides = _overrides(run, "ivr.labels=pseudo", "schedule.iterations=1")
    training_cli.finish(training_cli.start(SMOKE, overrides))
    questions = pl.read_parquet(str(run / "questions" / "*.parquet"))
    rewards = pl.read_parquet(str(run / "ivr_rewards" / "*.parquet"))
    # The Proposer wrote the question (its raw output is kept), not a dataset.
    assert questions["raw_output"].is_not_null().all()
    assert set(rewards["label_source"]) <= {"pseudo", "none"}
    # A pseudo label is the group's dominant boxed answer, so some rollout gave it.
    for group in rewards.filter(pl.col("label_source") == "pseudo").partition_by("image_index"):
        assert group["label"][0] in set(group["answer"].to_list())

