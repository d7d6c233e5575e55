from pathlib import Path

import polars as pl
import pytest

from ireasoner.config import EvaluationConfig
from ireasoner.data.world import world_samples
from ireasoner.eval import runner
from ireasoner.eval.lmms import TaskRun
from ireasoner.eval.runner import evaluate_checkpoint, read_results


class FakeLmms:
    """Stands in for the lmms-eval subprocess: `broken` tasks fail, the others score 0.5."""

    def __init__(self, broken: set[str]):
        self.broken = broken
        self.commands: list[list[str]] = []

    def __call__(self, task, command, output_dir, env, timeout_s=None) -> TaskRun:
        self.commands.append(command)
        if task in self.broken:
            return TaskRun(task, output_dir, 1.0, None, "lmms-eval wrote no results: boom")
        results = {"results": {task: {"acc,none": 0.5}}, "n-samples": {task: {"effective": 2}}}
        return TaskRun(task, output_dir, 2.0, results, None)


@pytest.fixture
def online(monkeypatch):
    # No offline preflight here: that is tested with the registry in test_offline.py.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)


def test_a_failing_task_is_recorded_and_the_others_still_run(tmp_path, monkeypatch, online):
    fake = FakeLmms(broken={"t2"})
    monkeypatch.setattr(runner, "run_task", fake)
    result = evaluate_checkpoint("/m", ["t1", "t2", "t3"], EvaluationConfig(), tmp_path, "ck",
                                 backend="transformers", device="cpu")
    assert len(fake.commands) == 3
    assert result.failed_tasks == ["t2"]
    rows = read_results(tmp_path / "results.parquet").to_pylist()
    by_task = {row["task"]: row for row in rows}
    assert by_task["t1"]["status"] == "ok" and by_task["t1"]["value"] == 0.5
    assert by_task["t1"]["samples"] == 2 and by_task["t3"]["metric"] == "acc"
    assert by_task["t2"]["status"] == "failed" and "boom" in by_task["t2"]["error"]
    assert by_task["t2"]["value"] is None


def test_every_task_runs_greedy_with_the_configured_budget(tmp_path, monkeypatch, online):
    fake = FakeLmms(broken=set())
    monkeypatch.setattr(runner, "run_task", fake)
    cfg = EvaluationConfig(max_new_tokens=33, limit=5, batch_size=2)
    evaluate_checkpoint("/m", ["t1", "t2"], cfg, tmp_path, "ck", backend="transformers",
                        device="cpu")
    for command in fake.commands:
        assert command[command.index("--gen_kwargs") + 1] == "temperature=0,max_new_tokens=33"
        assert command[command.index("--limit") + 1] == "5"
        assert command[command.index("--batch_size") + 1] == "2"


def test_reevaluation_replaces_only_its_own_rows(tmp_path, monkeypatch, online):
    monkeypatch.setattr(runner, "run_task", FakeLmms(broken={"t1"}))
    evaluate_checkpoint("/m", ["t1", "t2"], EvaluationConfig(), tmp_path, "ck",
                        backend="transformers", device="cpu")
    monkeypatch.setattr(runner, "run_task", FakeLmms(broken=set()))
    evaluate_checkpoint("/m", ["t1"], EvaluationConfig(), tmp_path, "ck",
                        backend="transformers", device="cpu")
    rows = read_results(tmp_path / "results.parquet").to_pylist()
    assert sorted((r["task"], r["status"]) for r in rows) == [("t1", "ok"), ("t2", "ok")]


def test_vllm_backend_without_a_gpu_is_refused_early(tmp_path):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        runner.resolve_backend("vllm", "cpu")


def test_auto_backend_is_transformers_on_cpu():
    assert runner.resolve_backend("auto", "cpu") == "transformers"


def test_local_task_gets_its_generated_include_path(tmp_path, monkeypatch, online):
    fake = FakeLmms(broken=set())
    monkeypatch.setattr(runner, "run_task", fake)
    cfg = EvaluationConfig(include_path=str(tmp_path / "mine"))
    evaluate_checkpoint("/m", ["ireasoner_synth", "custom"], cfg, tmp_path, "ck",
                        backend="transformers", device="cpu")
    local, custom = (Path(c[c.index("--include_path") + 1]) for c in fake.commands)
    assert (local / "ireasoner_synth" / "ireasoner_synth.yaml").is_file()
    assert custom == (tmp_path / "mine").resolve()


def test_rule_scored_math_tasks_get_their_packaged_include_path(tmp_path, monkeypatch, online):
    fake = FakeLmms(broken=set())
    monkeypatch.setattr(runner, "run_task", fake)
    evaluate_checkpoint("/m", ["mathvista_testmini_rules", "mathverse_testmini_rules"],
                        EvaluationConfig(), tmp_path, "ck", backend="transformers", device="cpu")
    for command in fake.commands:
        include = Path(command[command.index("--include_path") + 1])
        task = command[command.index("--tasks") + 1]
        assert (include / f"{task}.yaml").is_file()


def test_the_world_task_is_sampled_over_its_held_out_data(tmp_path, monkeypatch, online):
    fake = FakeLmms(broken=set())
    monkeypatch.setattr(runner, "run_task", fake)
    evaluate_checkpoint("/m", ["ireasoner_world", "t1"], EvaluationConfig(max_new_tokens=80),
                        tmp_path, "ck", backend="transformers", device="cpu")
    world, greedy = fake.commands
    assert world[world.index("--gen_kwargs") + 1] == "temperature=1,max_new_tokens=80"
    assert greedy[greedy.index("--gen_kwargs") + 1] == "temperature=0,max_new_tokens=80"
    include = Path(world[world.index("--include_path") + 1])
    text = (include / "ireasoner_world" / "ireasoner_world.yaml").read_text()
    assert "repeats: 5" in text and "take_first_k" in text
    rows = pl.read_parquet(tmp_path / "world_task" / "ireasoner_world.parquet")
    assert rows.height == 128
    assert set(rows["image_id"]) == {s.image_id for s in world_samples("held_out", 128)}
