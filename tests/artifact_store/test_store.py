"""The run directory: atomic writes, schemas, manifest, resume refusals, the lock."""

import json
import math
import multiprocessing
import os
import signal
import time

import polars as pl
import pytest

from ireasoner.config import load_config
from storage import ConfigMismatch, RunLocked, RunStore, atomic_write_bytes, run_lock
from storage.atomic import atomic_dir, cleanup_partial
from storage.schemas import SCHEMA_VERSION, TABLES, make_table


def _rewards_rows(iteration, n=3):
    return [dict(iteration=iteration, image_index=0, rollout_index=i, image_id="img",
                 parse_status="ok", answer_raw="3", answer="3", num_steps=2, steps_total=2,
                 words_before_answer=10, in_group=True, r_ans=0.5, r_step=float("nan"),
                 r_sol=0.5, advantage=0.0) for i in range(n)]


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


def test_make_table_names_missing_and_unknown_columns():
    with pytest.raises(ValueError, match=r"unknown columns \['extra'\].*missing columns \['advantage'\]"):
        rows = _rewards_rows(1)
        for r in rows:
            r.pop("advantage")
            r["extra"] = 1
        make_table("rewards", rows)


def test_nan_becomes_null_and_version_is_recorded(tmp_path):
    store = RunStore(tmp_path)
    store.write_table("rewards", 1, make_table("rewards", _rewards_rows(1)))
    table = store.read_table("rewards", 1)
    assert table.column("r_step").null_count == 3
    assert table.schema.metadata[b"ireasoner.schema_version"] == str(SCHEMA_VERSION).encode()


def test_all_iterations_read_in_one_polars_call(tmp_path):
    store = RunStore(tmp_path)
    for it in (1, 2, 3):
        store.write_table("rewards", it, make_table("rewards", _rewards_rows(it)))
    frame = pl.read_parquet(str(tmp_path / "rewards" / "*.parquet"))
    assert frame.height == 9 and sorted(frame["iteration"].unique()) == [1, 2, 3]
    assert store.scan("rewards").collect().height == 9
    assert store.scan("steps").collect().columns == TABLES["steps"].names


def test_write_refuses_a_table_with_another_schema(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="does not match its schema"):
        store.write_table("steps", 1, make_table("rewards", _rewards_rows(1)))


def test_manifest_records_config_hash_and_code_version(tmp_path):
    cfg = load_config(None, ["storage.run_dir=x"])
    store = RunStore(tmp_path / "run").open(cfg, resume=False)
    manifest = json.loads(store.manifest_path.read_text())
    assert manifest["config_fingerprint"] == cfg.fingerprint()
    assert manifest["code_version"].startswith("0.1.0")
    assert store.config() == cfg


def test_existing_run_without_resume_is_refused(tmp_path):
    cfg = load_config(None)
    RunStore(tmp_path).open(cfg, resume=False)
    with pytest.raises(FileExistsError, match="--resume"):
        RunStore(tmp_path).open(cfg, resume=False)


def test_resume_with_a_training_change_names_the_keys(tmp_path):
    RunStore(tmp_path).open(load_config(None), resume=False)
    changed = load_config(None, ["rewards.alpha=1.0", "optimization.lr=0.1"])
    with pytest.raises(ConfigMismatch) as err:
        RunStore(tmp_path).open(changed, resume=True)
    assert "rewards.alpha: 0.7 -> 1.0" in str(err.value)
    assert "optimization.lr" in str(err.value) and "--run-dir" in str(err.value)


def test_resume_may_extend_the_run(tmp_path):
    RunStore(tmp_path).open(load_config(None), resume=False)
    longer = load_config(None, ["schedule.iterations=9999"])
    assert RunStore(tmp_path).open(longer, resume=True).config().schedule.iterations == 9999


def test_stage_markers_define_completed_iterations(tmp_path):
    store = RunStore(tmp_path)
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
