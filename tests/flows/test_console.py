"""What the console shows: `--version`, the project's messages (-q/-v), the per-iteration summary
line when the output is not a terminal, and the trackers fed once per iteration across resumes."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main
from flows.console import ConsoleHandler
from tests.flows.test_cli_compact import _run

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke.yaml")
SUMMARY = re.compile(r"ireasoner\.progress - iteration (\d+)/(\d+)  r_sol \S+  \|G\|/N \S+  "
                     r"r_step \S+  KL \S+  β \S+  [\d.]+ s/it  \d+:\d\d left")


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(handler)
    for name in ("ireasoner", "storage"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"ireasoner \d+\.\d+\.\d+(\+g[0-9a-f]+(\.dirty)?)?\n", capsys.readouterr().out)


def test_a_command_shows_its_progress_unless_quiet(tmp_path, capsys):
    store = _run(tmp_path)
    assert main(["compact", str(store.root), "--every", "4"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"INFO    \| storage\.compaction - compact 1/\d+ \w+: 1 chunk", err), err

    store = _run(tmp_path / "again")
    assert main(["compact", "-q", str(store.root), "--every", "4"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "chunk files written" in captured.out
    assert main(["-v", "config", "--set", "schedule.iterations=2"]) == 0


def test_the_console_leaves_out_what_a_bar_shows_and_task_run_lines_unless_verbose(capsys):
    from flows.console import configure_console

    logging.getLogger("prefect.task_runs").setLevel(logging.INFO)  # as Prefect's config sets it
    configure_console(0)
    logging.getLogger("ireasoner.progress").info("on the bar", extra={"console": False})
    logging.getLogger("ireasoner.progress").info("a line")
    logging.getLogger("prefect.task_runs").info("Finished in state Completed()")
    logging.getLogger("storage.run").debug("a detail")
    err = capsys.readouterr().err
    assert "a line" in err and "on the bar" not in err and "Finished" not in err
    assert "a detail" not in err

    configure_console(1)
    logging.getLogger("prefect.task_runs").info("Finished in state Completed()")
    logging.getLogger("storage.run").debug("a detail")
    err = capsys.readouterr().err
    assert "Finished in state" in err and "DEBUG   | storage.run - a detail" in err
    logging.getLogger("prefect.task_runs").setLevel(logging.NOTSET)


def _train(run: Path, iterations: int, *flags: str, resume: bool) -> str:
    overrides = [f"schedule.iterations={iterations}", "schedule.images_per_iteration=1",
                 "solver.num_rollouts=3", "solver.max_new_tokens=64", "proposer.max_new_tokens=24",
                 "data.synthetic_count=4", "rewards.warmup_iterations=1",
                 "rewards.ramp_iterations=1", f"storage.run_dir={run}",
                 "logging.trackers=[tensorboard]"]
    command = [sys.executable, "-m", "flows.cli", *flags, "train", "--config", SMOKE]
    for item in overrides:
        command += ["--set", item]
    if resume:
        command.append("--resume")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    assert done.returncode == 0, done.stdout
    return done.stdout


@pytest.mark.slow
def test_summary_lines_verbosity_and_trackers_across_resumes(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    verbose = _train(run, 2, "-v", resume=False)
    assert [m.groups() for m in SUMMARY.finditer(verbose)] == [("1", "2"), ("2", "2")], verbose
    assert "prefect.task_runs - Finished in state Completed()" in verbose  # -v only

    plain = _train(run, 3, resume=True)
    assert [m.groups() for m in SUMMARY.finditer(plain)] == [("3", "3")], plain
    assert "prefect.task_runs" not in plain
    assert "INFO    | prefect.flow_runs - run " in plain  # the flow's own lines stay

    quiet = _train(run, 4, "-q", resume=True)
    assert "INFO" not in quiet and "iteration 4/4" not in quiet, quiet
    assert "Loading weights" not in quiet  # transformers' bars too
    assert quiet.strip().endswith(f"trained 4 iterations; artifacts in {run}")

    events = EventAccumulator(str(run / "tracking" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/solver_kl")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("train/r_sol")] == [1, 2, 3, 4]


def test_the_project_messages_reach_the_flow_runs_logs_in_prefect():
    """Prefect's logging config sends its own loggers to the API only; a flow run hands it the
    project's (flows.console), so the UI shows them."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    from flows.console import send_project_logs_to_prefect

    @flow(name="console-test")
    def speak() -> str:
        send_project_logs_to_prefect()
        logging.getLogger("ireasoner.progress").info("iteration 1/1  r_sol 0.5")
        logging.getLogger("storage.compaction").info("compact 1/1 steps")
        from prefect.runtime import flow_run

        return flow_run.id

    run_id = speak()
    for handler in logging.getLogger("ireasoner").handlers:
        if isinstance(handler, APILogHandler):
            handler.flush()  # logs are sent in batches
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    messages = {(log.name, log.message) for log in logs}
    assert ("ireasoner.progress", "iteration 1/1  r_sol 0.5") in messages, messages
    assert ("storage.compaction", "compact 1/1 steps") in messages
