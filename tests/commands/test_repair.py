"""`ireasoner repair` on small synthetic runs (stages propose/update, 4 iterations): where the
redo starts, what is moved aside, and that a repaired run passes the resume check. The end-to-end
repair-then-resume on the tiny model is in tests/flows/test_integrity.py."""

import json
from pathlib import Path

import pyarrow as pa
import torch
from safetensors.torch import save_file

from flows.cli import main
from ireasoner.commands.repair import plan_repair, repair_command
from storage import COMPLETE_MARKER, RunStore, compact_run


def _table(iteration, n=3):
    return pa.table({"iteration": pa.array([iteration] * n, pa.int32()),
                     "value": pa.array([0.5] * n)})


def _checkpoint(store: RunStore, iteration: int) -> None:
    path = store.checkpoint_dir(iteration)
    path.mkdir(parents=True)
    save_file({"w": torch.full((64,), float(iteration))}, str(path / "w.safetensors"))
    (path / COMPLETE_MARKER).write_text(f"{iteration}\n")
    store.record_files(path)


def _run(root: Path, iterations: int = 4, keep: tuple[int, ...] = (0, 1, 2, 3, 4),
         evaluate: tuple[int, ...] = ()) -> RunStore:
    store = RunStore(root)
    store.open({"stages": ["propose", "update"]}, resume=False)
    store.start_stage()
    _checkpoint(store, 0)
    store.mark_done(0, "prepare", {})
    for iteration in range(1, iterations + 1):
        store.start_stage()
        store.write_table("questions", iteration, _table(iteration))
        store.mark_done(iteration, "propose", {})
        store.start_stage()
        store.write_table("updates", iteration, _table(iteration))
        _checkpoint(store, iteration)
        store.mark_done(iteration, "update", {})
        if iteration in evaluate:
            store.start_stage()
            store.mark_done(iteration, "evaluate", {})
    for iteration, path in store.checkpoints():
        if iteration not in keep:
            for file in sorted(path.rglob("*"), reverse=True):
                file.unlink()
            path.rmdir()
    return store


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:50])


def test_a_damaged_table_redoes_its_stage_and_everything_after(tmp_path):
    store = _run(tmp_path / "run")
    _truncate(tmp_path / "run" / "updates" / "000003.parquet")
    plan = plan_repair(store)
    assert plan.redo == (3, "update") and plan.why == []
    assert plan.markers == [(3, "update"), (4, "propose"), (4, "update")]
    assert plan.paths == ["checkpoints/iter-000003", "checkpoints/iter-000004",
                          "questions/000004.parquet", "stages/000003/update.json",
                          "stages/000004/propose.json", "stages/000004/update.json",
                          "updates/000003.parquet", "updates/000004.parquet"]
    report = repair_command(str(store.root))
    assert "iteration 3 stage 'update': updates/000003.parquet is truncated" in report
    [folder] = (tmp_path / "run" / "damaged").iterdir()
    assert (folder / "updates" / "000003.parquet").stat().st_size == 50  # moved, not deleted
    assert (folder / "checkpoints" / "iter-000004" / "w.safetensors").is_file()
    assert json.loads((folder / "REPAIR.json").read_text())["redo"] == {
        "iteration": 3, "stage": "update"}
    assert store.completed_iterations() == 2 and store.stage_done(3, "propose")
    assert [n for n, _ in store.checkpoints()] == [0, 1, 2]
    store.require_intact()  # what --resume checks now passes


def test_a_pruned_checkpoint_moves_the_redo_back_to_the_latest_kept_one(tmp_path):
    store = _run(tmp_path / "run", keep=(0, 2, 4))
    _truncate(tmp_path / "run" / "questions" / "000004.parquet")
    plan = plan_repair(store)
    assert plan.redo == (3, "propose")
    assert "iter-000003" in plan.why[0] and "not kept" in plan.why[0]


def test_a_damaged_checkpoint_is_redone_by_its_update_from_the_one_before(tmp_path):
    store = _run(tmp_path / "run")
    _truncate(store.checkpoint_dir(4) / "w.safetensors")
    plan = plan_repair(store)
    assert plan.redo == (4, "update")
    assert "checkpoints/iter-000004" in plan.paths and "questions/000004.parquet" not in plan.paths


def test_with_no_intact_checkpoint_before_it_the_run_is_redone_from_prepare(tmp_path):
    store = _run(tmp_path / "run", keep=(4,))
    _truncate(store.checkpoint_dir(4) / "w.safetensors")
    assert plan_repair(store).redo == (0, "prepare")


def test_a_chunk_holding_kept_and_redone_iterations_moves_the_redo_to_its_first(tmp_path):
    store = _run(tmp_path / "run")
    compact_run(store, 2)  # chunks 1-2 and 3-4 of each table
    _truncate(tmp_path / "run" / "updates" / "000003-000004.parquet")
    plan = plan_repair(store)
    assert plan.redo == (3, "propose")  # questions' chunk 3-4 would shadow a redone propose
    assert "questions/000003-000004.parquet" in plan.paths
    assert "questions/000001-000002.parquet" not in plan.paths


def test_a_damaged_evaluation_needs_only_its_own_checkpoint(tmp_path):
    store = _run(tmp_path / "run", evaluate=(2,))
    eval_file = tmp_path / "run" / "evaluations" / "000002.parquet"
    store.start_stage()
    store.write_table("evaluations", 2, _table(2))
    store.mark_done(2, "evaluate", {})
    _truncate(eval_file)
    plan = plan_repair(store)
    assert plan.redo == (2, "evaluate")
    assert "checkpoints/iter-000002" not in plan.paths and "checkpoints/iter-000003" in plan.paths


def test_dry_run_moves_nothing_and_an_intact_run_has_nothing_to_repair(tmp_path, capsys):
    store = _run(tmp_path / "run")
    assert main(["repair", str(store.root)]) == 0
    assert "no damaged file found" in capsys.readouterr().out
    _truncate(tmp_path / "run" / "updates" / "000002.parquet")
    assert main(["repair", str(store.root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--dry-run: nothing moved" in out and "  stages/000002/update.json" in out
    assert not (tmp_path / "run" / "damaged").exists()
    assert (tmp_path / "run" / "stages" / "000002" / "update.json").is_file()
