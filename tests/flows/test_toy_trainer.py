"""A third trainer needs only its own folder and one registry line: a toy trainer, declared in
this file and registered for the test, runs through the real training flow (Prefect tasks,
resume, metrics, checkpoints) with the shared solve stage on the tiny model."""

from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from ireasoner.data.sources import images_for_iteration
from ireasoner.pipeline.metrics import common_metrics, stage_seconds
from ireasoner.pipeline.solve import solve
from ireasoner.pipeline.tables import KEY, QUESTIONS, ROLLOUTS, Table
from ireasoner.pipeline.trainer import TrainerSpec, reinforce_trainers
from ireasoner.trainers import registry

pytestmark = pytest.mark.slow
SMOKE = str(Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml")

# ---- the toy trainer: asks a fixed question, rewards each answer's length, never learns ----
LENGTHS = Table("toy_lengths", pa.schema(KEY + [
    pa.field("rollout_index", pa.int32(), nullable=False), pa.field("answer", pa.string()),
    pa.field("length", pa.float64())]))


def ask(ctx, iteration):
    records = images_for_iteration(ctx.image_set, iteration, 1, ctx.config.trainer.seed)
    rows = [dict(iteration=iteration, image_index=k, image_id=r.image_id, image_sha256=r.sha256,
                 question="What is shown?", parse_status="ok") for k, r in enumerate(records)]
    ctx.store.write_table(QUESTIONS.name, iteration, QUESTIONS.build_sparse(rows))
    return {}


def measure(ctx, iteration):
    rows = [dict(iteration=iteration, image_index=r["image_index"], answer=r["text"][:8],
                 rollout_index=r["rollout_index"], length=float(len(r["text"])))
            for r in ctx.store.read_table(ROLLOUTS.name, iteration).to_pylist()]
    ctx.store.write_table(LENGTHS.name, iteration, LENGTHS.build(rows))
    return {}


def finish(ctx, iteration):
    ctx.restore()
    ctx.save_checkpoint(iteration)
    lengths = pl.from_arrow(ctx.store.read_table(LENGTHS.name, iteration))
    row = common_metrics(ctx.store, iteration, ctx.trainer.metrics, lengths)
    row.update(mean_length=lengths["length"].mean(), **stage_seconds(
        ctx.store, iteration, ctx.trainer.stage_names, 0.0))
    ctx.store.write_table("metrics", iteration, ctx.trainer.metrics.build([row]))
    return {}


TOY = TrainerSpec(kind="toy", stages=(("ask", ask), ("solve", solve), ("measure", measure),
                                      ("finish", finish)),
                  make_trainers=reinforce_trainers, rollout_rewards=LENGTHS, tables=(LENGTHS,),
                  metrics_fields=(pa.field("mean_length", pa.float64()),))
# ---- end of the toy trainer ---------------------------------------------------------------


def test_a_toy_trainer_runs_through_the_real_flow_and_resumes(tmp_path, tiny_model_path,
                                                               monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    from flows.train import train

    monkeypatch.setitem(registry.TRAINERS, "toy", TOY)  # its one registry line
    run = tmp_path / "toy"
    overrides = ["trainer.kind=toy", "solver.num_rollouts=2", "solver.max_new_tokens=16",
                 "data.synthetic_count=2", "schedule.images_per_iteration=1",
                 # absolute λ counts: a fraction schedule would change when the run grows
                 "rewards.warmup_iterations=0", "rewards.ramp_iterations=1"]
    with prefect_test_harness():
        first = train(config=SMOKE, overrides=[*overrides, "schedule.iterations=1"],
                      run_dir=str(run))
        resumed = train(config=SMOKE, overrides=[*overrides, "schedule.iterations=2"],
                        run_dir=str(run), resume=True)
    assert first["iterations"] == 1 and resumed["iterations"] == 2
    metrics = pl.read_parquet(str(run / "metrics" / "*.parquet")).sort("iteration")
    assert metrics.columns == TOY.metrics.schema.names
    assert metrics["rollouts"].to_list() == [2.0, 2.0] and metrics["mean_length"].min() > 0
    assert {"seconds_ask", "seconds_measure", "seconds_finish"} <= set(metrics.columns)
    assert pl.read_parquet(str(run / "toy_lengths" / "*.parquet")).height == 4
    assert [i for i, _ in _checkpoints(run)] == [2]
    assert (run / "stages" / "000000" / "prepare.json").is_file()


def _checkpoints(run: Path):
    from storage import RunStore

    return RunStore(run).checkpoints()
