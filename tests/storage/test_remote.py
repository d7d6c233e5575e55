"""A run at a URL (storage.remote, storage.lease), with a file:// remote and two mirrors standing
in for two workers: what one publishes the other sees, markers last, checkpoints whole, and one
lease holder at a time."""

import json
import os
import pickle
import time
from pathlib import Path

import pyarrow as pa
import pytest

from storage import NotARun, RunLocked, RunStore, TransientStorageError
from storage.atomic import atomic_dir
from storage.lease import RunLease
from storage.remote import Mirror

MANIFEST = {"stages": ["propose", "solve", "score", "update"]}


@pytest.fixture
def url(tmp_path):
    return f"file://{tmp_path / 'remote' / 'run'}"


@pytest.fixture
def workers(tmp_path, url):
    """Two stores of the same run, each with its own mirror: two machines."""
    return RunStore(url, mirror=tmp_path / "a"), RunStore(url, mirror=tmp_path / "b")


def _write_stage(store, iteration, stage="score"):
    rows = [dict(iteration=iteration, stage=stage, ref="img", reason="test", detail=None)]
    with store.synced():
        store.write_table("skips", iteration, pa.Table.from_pylist(rows))
        store.mark_done(iteration, stage, {"rows": 1})


def _write_checkpoint(store, iteration, payload=b"weights"):
    with atomic_dir(store.checkpoint_dir(iteration)) as tmp:
        (tmp / "adapters").mkdir()
        (tmp / "adapters" / "model.safetensors").write_bytes(payload)
        (tmp / "state.json").write_text(json.dumps({"iteration": iteration}))
    (store.checkpoint_dir(iteration) / "COMPLETE").write_text(f"{iteration}\n")


def test_a_stage_written_by_one_worker_is_seen_by_another(workers):
    a, b = workers
    a.open(MANIFEST, resume=False)
    _write_stage(a, 1)
    b.pull()
    assert b.exists() and b.stage_done(1, "score")
    assert b.read_table("skips", 1).equals(a.read_table("skips", 1))
    # And back, including a file the first worker already has, changed by the second.
    with b.synced():
        b.update_manifest(model_path="/models/tiny")
        b.mark_done(1, "update", {})
    a.pull()
    assert a.manifest()["model_path"] == "/models/tiny" and a.stage_done(1, "update")


def test_a_fresh_mirror_resumes_the_run(workers, tmp_path, url):
    a, _ = workers
    a.open(MANIFEST, resume=False)
    _write_stage(a, 1)
    fresh = RunStore(url, mirror=tmp_path / "c")
    with pytest.raises(FileExistsError, match=f"{url} already holds a run"):
        fresh.open(MANIFEST, resume=False)
    fresh.open(MANIFEST, resume=True)
    assert fresh.stage_done(1, "score") and len(fresh.manifest()["resumed_at"]) == 1


def test_markers_are_uploaded_last_and_a_crash_before_them_leaves_the_stage_undone(
        workers, monkeypatch):
    a, b = workers
    uploaded = []
    upload = Mirror._upload

    def crash_at_the_marker(self, rel, *args):
        if rel.startswith("stages/"):
            raise ConnectionError("the worker died")
        uploaded.append(rel)
        return upload(self, rel, *args)

    monkeypatch.setattr(Mirror, "_upload", crash_at_the_marker)
    with pytest.raises(TransientStorageError, match="the worker died"):  # a retryable failure
        _write_stage(a, 1)
    assert "skips/000001.parquet" in uploaded  # the artifact went first
    b.pull()
    assert b.has_table("skips", 1) and not b.stage_done(1, "score")
    monkeypatch.setattr(Mirror, "_upload", upload)
    a.push()  # a retry publishes the marker the crash withheld
    b.pull()
    assert b.stage_done(1, "score")


def test_checkpoints_round_trip_and_pruning_deletes_them_remotely(workers):
    a, b = workers
    for iteration in (1, 2):
        _write_checkpoint(a, iteration, payload=bytes([iteration]) * 1000)
    a.push()
    b.pull()
    assert [i for i, _ in b.checkpoints()] == [1, 2]
    assert (b.checkpoint_dir(2) / "adapters" / "model.safetensors").read_bytes() == b"\x02" * 1000
    a.prune_checkpoints(keep_every=0, latest=2)
    a.push()
    b.pull()
    assert [i for i, _ in b.checkpoints()] == [2] and not b.checkpoint_dir(1).exists()


def test_a_checkpoint_rewritten_in_place_is_never_complete_with_mixed_files(workers, monkeypatch):
    a, b = workers
    _write_checkpoint(a, 2, payload=b"old")
    a.push()
    _write_checkpoint(a, 2, payload=b"new")  # an update re-run after a crash
    upload = Mirror._upload

    def crash_after_one_file(self, rel, *args):
        raise ConnectionError("the worker died")

    monkeypatch.setattr(Mirror, "_upload", crash_after_one_file)
    with pytest.raises(TransientStorageError, match="the worker died"):  # a retryable failure
        a.push()
    b.pull()
    assert b.checkpoints() == []  # COMPLETE was withdrawn before anything was replaced
    monkeypatch.setattr(Mirror, "_upload", upload)
    a.push()
    b.pull()
    assert (b.checkpoint_dir(2) / "adapters" / "model.safetensors").read_bytes() == b"new"
    assert [i for i, _ in b.checkpoints()] == [2]


def test_a_file_deleted_here_is_not_pulled_back_and_is_deleted_remotely(workers):
    a, b = workers
    _write_checkpoint(a, 3)
    a.push()
    b.pull()
    # What restore() does to a checkpoint of an iteration that never completed.
    for path in sorted(a.checkpoint_dir(3).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    a.checkpoint_dir(3).rmdir()
    a.pull()
    assert a.checkpoints() == []
    a.push()
    b.pull()
    assert b.checkpoints() == []


def test_remove_remote_lists_then_deletes_the_remote_run_and_the_mirror(workers):
    a, b = workers
    a.open(MANIFEST, resume=False)
    _write_stage(a, 1)
    listed = a.list_remote()
    assert sorted(listed) == ["manifest.json", "skips/000001.parquet",
                              "stages/000001/score.json"]
    assert all(size > 0 for size in listed.values())
    assert a.remove_remote() == 3
    assert not a.root.exists()
    assert a.list_remote() == {}
    assert not b.pull().exists()


def test_remove_remote_refuses_a_run_being_trained_and_a_prefix_that_is_no_run(workers, url):
    a, b = workers
    a.open(MANIFEST, resume=False)
    with a.lock(lease_seconds=5):
        with pytest.raises(RunLocked, match="in use by another training"):
            b.remove_remote()
    assert b.pull().exists()
    other = RunStore(url + "-data", mirror=a.root.parent / "c")
    Path(url.removeprefix("file://") + "-data").mkdir(parents=True)
    Path(url.removeprefix("file://") + "-data", "table.csv").write_text("1,2\n")
    with pytest.raises(NotARun, match="no manifest.json"):
        other.remove_remote()
    assert other.list_remote() == {"table.csv": 4}


# ---- the lease ------------------------------------------------------------------------------
def test_the_lease_refuses_a_second_trainer_naming_the_first(workers):
    a, b = workers
    with a.lock(lease_seconds=5):
        with pytest.raises(RunLocked, match=r"file://.* is in use by another training \(pid \d+ "
                                            r"on .*lease expires in \d+ s.*--run-dir"):
            with b.lock(lease_seconds=5):
                pass
    with b.lock(lease_seconds=5):  # released on exit
        pass


def test_the_heartbeat_keeps_the_lease_past_its_lifetime(workers):
    a, b = workers
    with a.lock(lease_seconds=2):
        time.sleep(3)
        with pytest.raises(RunLocked):
            with b.lock(lease_seconds=2):
                pass
        a.push()  # still certainly held: publishing goes on


def test_an_expired_lease_is_taken_over_and_its_old_holder_stops_publishing(workers):
    a, b = workers
    a.open(MANIFEST, resume=False)
    crashed = RunLease(a.remote.fs, a.remote.remote_path("LEASE"), a.location, seconds=0.3)
    crashed.acquire()  # no heartbeat: the holder was killed
    time.sleep(0.4)
    with b.lock(lease_seconds=5):
        with pytest.raises(RunLocked, match="not renewed"):
            crashed.check()
        crashed.renew()
        with pytest.raises(RunLocked, match="lost to pid"):
            crashed.check()


def test_a_trainer_whose_lease_was_taken_stops_at_its_next_push(workers):
    a, _ = workers
    with pytest.raises(RunLocked, match="lost to pid 7 on elsewhere"):
        with a.lock(lease_seconds=1):
            other = {"holder": "other", "host": "elsewhere", "pid": 7, "since": "now",
                     "expires": time.time() + 60}
            # Atomically, as another trainer's lease module writes it: a heartbeat must never
            # read half of it.
            taken = Path(a.remote.remote_path("LEASE"))
            taken.with_name("taken.tmp").write_text(json.dumps(other))
            os.replace(taken.with_name("taken.tmp"), taken)
            deadline = time.monotonic() + 10
            while not a._lease.lost and time.monotonic() < deadline:
                time.sleep(0.05)  # until a heartbeat finds it
            a.push()
    assert json.loads(a.remote.fs.cat_file(a.remote.remote_path("LEASE")))["holder"] == "other"


def test_a_store_sent_to_another_worker_uses_its_mirror_and_not_the_lease(url, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("IREASONER_MIRRORS", str(tmp_path / "machine-a"))
    a = RunStore(url)
    with a.lock(lease_seconds=5):
        a.open(MANIFEST, resume=False)
        monkeypatch.setenv("IREASONER_MIRRORS", str(tmp_path / "machine-b"))
        worker = pickle.loads(pickle.dumps(a))  # what a task on another machine receives
        assert worker._lease is None and worker.root.parent == tmp_path / "machine-b"
        _write_stage(worker, 1)
    assert a.pull().stage_done(1, "score")
