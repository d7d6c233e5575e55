"""Stages of one run on different workers: each worker has its own mirror of a run at a URL and
its own models, and the run trains exactly as in one process."""

import pickle

import pytest

from ireasoner.config import load_config
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.prepare import prepare
from ireasoner.pipeline.run import open_run
from ireasoner.pipeline.runner import run_stage
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore

pytestmark = pytest.mark.slow

TABLES = ("questions", "rollouts", "steps", "rewards", "groups", "updates")
IREASONER = trainer_spec("ireasoner")
# Two iterations; iteration 2 also updates the Proposer. Which worker runs each stage: worker 0
# must reload the policy that worker 1's update of iteration 1 trained before solving in
# iteration 2, and worker 1 must do the same before scoring.
ASSIGNMENT = {(1, "propose"): 0, (1, "solve"): 1, (1, "score"): 0, (1, "update"): 1,
              (2, "propose"): 1, (2, "solve"): 0, (2, "score"): 1, (2, "update"): 0}


@pytest.fixture(scope="module")
def config(tiny_run, tmp_path_factory):
    overrides = [o for o in tiny_run if not o.startswith(("evaluation.", "schedule.iterations"))]
    return load_config("configs/smoke.yaml", [*overrides, "schedule.iterations=2",
                                              "evaluation.every=0"])


def _train(contexts: list[RunContext], assignment: dict) -> None:
    with contexts[0].store.synced():
        run_stage(contexts[0], 0, "prepare", prepare)
    for iteration in (1, 2):
        for stage, fn in IREASONER.stages:
            ctx = contexts[assignment[iteration, stage]]
            with ctx.store.synced():
                run_stage(ctx, iteration, stage, fn)


def test_a_context_travels_without_its_models(config, tmp_path):
    ctx = RunContext(config, RunStore(tmp_path / "run"), IREASONER)
    ctx.__dict__["backbone"] = object()  # a built model part must not be sent along
    ctx.memo("step_embedder", object)
    clone = pickle.loads(pickle.dumps(ctx))
    assert clone.config == config and clone.store.location == ctx.store.location
    assert clone.trainer == IREASONER
    assert "backbone" not in clone.__dict__ and clone._policy_iteration is None
    assert clone._memo == {}


def test_stages_on_two_workers_train_exactly_as_one_process(config, tiny_model_path, tmp_path):
    local = RunStore(tmp_path / "one-process")
    open_run(local, config, trainer_spec, resume=False)
    one = RunContext(config, local, IREASONER)
    _train([one], dict.fromkeys(ASSIGNMENT, 0))
    one.close()

    url = (tmp_path / "remote").as_uri()
    open_run(RunStore(url, mirror=tmp_path / "opener"), config, trainer_spec, resume=False)
    workers = [RunContext(config, RunStore(url, mirror=tmp_path / f"worker-{w}"), IREASONER)
               for w in (0, 1)]
    _train(workers, ASSIGNMENT)
    assert workers[0]._policy_iteration == 2 and workers[1]._policy_iteration == 1

    reader = RunStore(url, mirror=tmp_path / "reader").pull()
    assert reader.completed_iterations() == 2
    for table in TABLES:
        for iteration in (1, 2):
            assert reader.read_table(table, iteration).equals(local.read_table(table, iteration)), (
                f"{table} of iteration {iteration} differs")
    for role in ("solver", "proposer"):
        ours = reader.checkpoint_dir(2) / "adapters" / role / "adapter_model.safetensors"
        theirs = local.checkpoint_dir(2) / "adapters" / role / "adapter_model.safetensors"
        assert ours.read_bytes() == theirs.read_bytes(), f"{role} adapter differs"
