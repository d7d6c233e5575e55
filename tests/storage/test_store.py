"""The run directory: atomic writes, tables, manifest, resume refusals, the lock. The store is
tested on plain Arrow tables and manifest dicts: it knows nothing of the method."""

import json
import math
import multiprocessing
import os
import signal
import time

import polars as pl
import pyarrow as pa
import pytest

from storage import NotARun, ResumeRefused, RunLocked, RunStore, atomic_write_bytes, run_lock
from storage.atomic import atomic_dir, cleanup_partial


def _table(iteration, n=3):
    return pa.table({"iteration": pa.array([iteration] * n, pa.int32()),
                     "rollout_index": pa.array(range(n), pa.int32()),
                     "r_step": pa.array([0.5] * n)})


def test_atomic_write_leaves_no_partial_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")

    def boom(*_):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_dir_replaces_whole_directory_or_nothing(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "w").write_text("2")
        raise RuntimeError("killed")
    assert (target / "w").read_text() == "1"
    assert cleanup_partial(tmp_path) == 0


def test_tables_are_written_and_read_per_iteration_and_in_one_polars_call(tmp_path):
    store = RunStore(tmp_path)
    for it in (1, 2, 3):
        store.write_table("rewards", it, _table(it))
    assert store.read_table("rewards", 2).equals(_table(2))
    frame = pl.read_parquet(str(tmp_path / "rewards" / "*.parquet"))
    assert frame.height == 9 and sorted(frame["iteration"].unique()) == [1, 2, 3]
    assert store.scan("rewards").collect().height == 9
    assert store.tables() == ["rewards"]


def test_an_empty_scan_has_the_columns_of_the_schema_given(tmp_path):
    schema = pa.schema([pa.field("iteration", pa.int32()), pa.field("text", pa.string())])
    store = RunStore(tmp_path)
    assert store.scan("steps", schema=schema).collect().columns == ["iteration", "text"]
    assert store.scan("steps").collect().is_empty()


def test_table_names_that_could_leave_the_run_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lower-case letters"):
        RunStore(tmp_path).write_table("../elsewhere", 1, _table(1))


def test_a_new_run_records_the_callers_manifest(tmp_path):
    store = RunStore(tmp_path / "run").open({"stages": ["a", "b"], "anything": 1}, resume=False)
    manifest = json.loads(store.manifest_path.read_text())
    assert manifest["anything"] == 1 and manifest["created_at"]
    assert store.stages() == ["a", "b"]


def test_existing_run_without_resume_is_refused(tmp_path):
    RunStore(tmp_path).open({"stages": ["a"]}, resume=False)
    with pytest.raises(FileExistsError, match="--resume"):
        RunStore(tmp_path).open({"stages": ["a"]}, resume=False)


def test_resume_applies_the_checks_changes_or_its_refusal(tmp_path):
    RunStore(tmp_path).open({"stages": ["a"], "config": {"x": 1}}, resume=False)

    def refuse(manifest):
        raise ResumeRefused(f"no: {manifest['config']}")
    with pytest.raises(ResumeRefused, match="no: {'x': 1}"):
        RunStore(tmp_path).open({}, resume=True, on_resume=refuse)
    store = RunStore(tmp_path).open({}, resume=True, on_resume=lambda m: {"config": {"x": 2}})
    assert store.manifest()["config"] == {"x": 2} and len(store.manifest()["resumed_at"]) == 1


def test_stage_markers_define_completed_iterations(tmp_path):
    store = RunStore(tmp_path).open({"stages": ["propose", "solve", "score", "update"]},
                                    resume=False)
    for it in (1, 2):
        for stage in ("propose", "solve", "score", "update"):
            store.mark_done(it, stage, {"seconds": 0.1})
    store.mark_done(3, "propose", {})
    assert store.completed_iterations() == 2
    assert store.stage_done(3, "propose") and not store.stage_done(3, "solve")
    assert math.isclose(store.stage_info(1, "score")["seconds"], 0.1)


def test_checkpoints_without_complete_marker_are_ignored_and_pruning_keeps_latest(tmp_path):
    store = RunStore(tmp_path)
    for it in (1, 2, 3, 4):
        path = store.checkpoint_dir(it)
        path.mkdir(parents=True)
        if it != 4:
            (path / "COMPLETE").write_text("")
    assert [i for i, _ in store.checkpoints()] == [1, 2, 3]
    store.prune_checkpoints(keep_every=2, latest=3)
    assert [i for i, _ in store.checkpoints()] == [2, 3]


def _hold_lock(path, ready):
    with run_lock(path):
        ready.set()
        time.sleep(60)


def test_lock_refuses_a_second_trainer_and_is_released_by_kill_9(tmp_path):
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(tmp_path, ready))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(RunLocked, match=f"in use by another training.*{holder.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    with run_lock(tmp_path):  # the kernel released the dead holder's lock
        pass


# ---- replacing a run (train --overwrite) ----------------------------------------------------
def test_move_aside_renames_the_run_and_keeps_every_file(tmp_path):
    store = RunStore(tmp_path / "run")
    store.open({"stages": ["update"]}, resume=False)
    store.write_table("rewards", 1, _table(1))
    aside = store.move_aside()
    assert aside.name.startswith("run.replaced-") and aside.parent == tmp_path
    assert not store.root.exists()
    assert RunStore(aside).read_table("rewards", 1).equals(_table(1))
    store.open({"stages": ["update"]}, resume=False)  # a second replacement gets its own name
    assert store.move_aside() not in (aside, None) and len(list(tmp_path.iterdir())) == 2


def test_move_aside_refuses_a_run_that_another_process_trains(tmp_path):
    store = RunStore(tmp_path / "run")
    store.open({"stages": ["update"]}, resume=False)
    with run_lock(store.root):  # a second open file: flock conflicts as with another process
        with pytest.raises(RunLocked, match="in use by another training"):
            store.move_aside()
    assert store.exists()


def test_move_aside_refuses_a_directory_that_is_not_a_run_unless_forced(tmp_path):
    store = RunStore(tmp_path / "photos")
    store.root.mkdir()
    (store.root / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(NotARun, match=r"photos holds files but no manifest.json.*--force"):
        store.move_aside()
    assert (store.root / "holiday.jpg").read_bytes() == b"precious"
    aside = store.move_aside(force=True)
    assert (aside / "holiday.jpg").read_bytes() == b"precious"
    assert RunStore(tmp_path / "absent").move_aside() is None
