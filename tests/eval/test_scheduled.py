import json

import pytest

from ireasoner.config import Config
from ireasoner.eval import runner
from ireasoner.eval.lmms import TaskRun
from ireasoner.eval.scheduled import evaluate_pending, run_checkpoints
from ireasoner.policy import export


class CountingLmms:
    def __init__(self, broken=()):
        self.broken = set(broken)
        self.calls: list[tuple[str, str]] = []  # (model path, task)

    def __call__(self, task, command, output_dir, env, timeout_s=None) -> TaskRun:
        model_args = command[command.index("--model_args") + 1]
        self.calls.append((model_args.split(",")[0].split("=")[1], task))
        if task in self.broken:
            return TaskRun(task, output_dir, 0.1, None, "failed on purpose")
        return TaskRun(task, output_dir, 0.1, {"results": {task: {"acc,none": 1.0}}}, None)


def _checkpoint(run_dir, iteration, complete=True):
    path = run_dir / "checkpoints" / f"iter-{iteration:06d}"
    (path / "adapters" / "solver").mkdir(parents=True)
    if complete:
        (path / "COMPLETE").write_text("")


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    merged = []

    def fake_export(base, adapter_dir, out_dir, dtype=None):
        out_dir.mkdir(parents=True)
        merged.append(adapter_dir)
        return out_dir

    monkeypatch.setattr(export, "export_merged", fake_export)
    (tmp_path / "manifest.json").write_text(json.dumps({"model_path": "/base"}))
    _checkpoint(tmp_path, 1)
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 3, complete=False)  # still being written: not evaluated
    return tmp_path


CFG = Config(evaluation={"tasks": ["a", "b"]}, model={"device": "cpu"})


def test_layout_lists_base_then_complete_checkpoints(run_dir):
    layout = run_checkpoints(run_dir)
    assert layout.base_model == "/base"
    assert [t.label for t in layout.targets] == ["base", "iter-000001", "iter-000002"]
    assert layout.targets[1].adapter_dir == run_dir / "checkpoints/iter-000001/adapters/solver"
    assert layout.targets[2].out_dir == run_dir / "eval" / "iter-000002"


def test_running_twice_evaluates_nothing_twice(run_dir, monkeypatch):
    lmms = CountingLmms()
    monkeypatch.setattr(runner, "run_task", lmms)
    first = evaluate_pending(run_dir, CFG)
    assert [r.checkpoint for r in first] == ["base", "iter-000001", "iter-000002"]
    assert len(lmms.calls) == 6
    assert lmms.calls[0] == ("/base", "a")
    assert evaluate_pending(run_dir, CFG) == []
    assert len(lmms.calls) == 6
    assert not list((run_dir / "eval").rglob(".merged-*"))  # merged copies are removed


def test_a_new_checkpoint_or_task_is_all_that_runs_next_time(run_dir, monkeypatch):
    lmms = CountingLmms()
    monkeypatch.setattr(runner, "run_task", lmms)
    evaluate_pending(run_dir, CFG)
    (run_dir / "checkpoints" / "iter-000003" / "COMPLETE").write_text("")
    more = Config(evaluation={"tasks": ["a", "b", "c"]}, model={"device": "cpu"})
    evaluate_pending(run_dir, more)
    # base, iter 1 and iter 2 lack only "c"; iter 3 is new and needs all three.
    assert [task for _, task in lmms.calls[6:]] == ["c", "c", "c", "a", "b", "c"]
    assert lmms.calls[6][0] == "/base"
    assert all(".merged-" in model for model, _ in lmms.calls[7:])


def test_failed_tasks_are_retried_only_when_asked(run_dir, monkeypatch):
    monkeypatch.setattr(runner, "run_task", CountingLmms(broken={"b"}))
    evaluate_pending(run_dir, CFG, include_base=False)
    again = CountingLmms()
    monkeypatch.setattr(runner, "run_task", again)
    assert evaluate_pending(run_dir, CFG, include_base=False) == []
    evaluate_pending(run_dir, CFG, include_base=False, retry_failed=True)
    assert [task for _, task in again.calls] == ["b", "b"]


def test_a_manifest_without_model_path_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="model_path"):
        run_checkpoints(tmp_path)
