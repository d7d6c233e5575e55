"""A run at an s3:// URL against a real S3 API (moto's server on loopback, through s3fs): the
round trip between two workers, and the lease's conditional writes."""

import json

import fsspec
import pyarrow as pa
import pytest

from storage import RunLocked, RunStore, TransientStorageError, is_transient
from storage.atomic import atomic_dir
from storage.lease import RunLease

MANIFEST = {"stages": ["propose", "solve", "score", "update"]}


@pytest.fixture
def url(s3_bucket, request):
    return f"{s3_bucket}/{request.node.name}"


def test_a_run_round_trips_through_s3_between_two_workers(url, tmp_path):
    a, b = RunStore(url, mirror=tmp_path / "a"), RunStore(url, mirror=tmp_path / "b")
    with a.lock(lease_seconds=10):
        a.open(MANIFEST, resume=False)
        with a.synced():
            rows = [dict(iteration=1, stage="score", ref="img", reason="test", detail=None)]
            a.write_table("skips", 1, pa.Table.from_pylist(rows))
            with atomic_dir(a.checkpoint_dir(1)) as tmp:
                (tmp / "weights.safetensors").write_bytes(bytes(range(256)) * 400)
            (a.checkpoint_dir(1) / "COMPLETE").write_text("1\n")
            for stage in ("propose", "solve", "score", "update"):
                a.mark_done(1, stage, {})
    keys = fsspec.filesystem("s3").find(url.removeprefix("s3://"))
    assert f"{url.removeprefix('s3://')}/stages/000001/update.json" in keys
    assert not any(k.endswith("/LEASE") for k in keys)  # released
    b.pull()
    assert b.completed_iterations() == 1
    assert b.read_table("skips", 1).equals(a.read_table("skips", 1))
    assert (b.checkpoint_dir(1) / "weights.safetensors").read_bytes() == bytes(range(256)) * 400
    assert b.manifest() == a.manifest()


def test_a_second_trainer_is_refused_through_s3(url, tmp_path):
    a, b = RunStore(url, mirror=tmp_path / "a"), RunStore(url, mirror=tmp_path / "b")
    with a.lock(lease_seconds=10):
        assert a._lease.conditional  # S3: If-None-Match / If-Match, no read-back race
        with pytest.raises(RunLocked, match=rf"{url} is in use by another training \(pid"):
            with b.lock(lease_seconds=10):
                pass
    with b.lock(lease_seconds=10):
        pass


def test_taking_over_an_expired_lease_is_conditional_on_what_was_read(url, tmp_path, monkeypatch):
    """Two trainers find the same expired lease; the If-Match write lets only one take it."""
    store = RunStore(url, mirror=tmp_path / "a")
    fs, path = store.remote.fs, store.remote.remote_path("LEASE")
    fs.pipe_file(path, json.dumps({"holder": "dead", "host": "h", "pid": 1, "since": "then",
                                   "expires": 0.0}).encode())
    first, second = (RunLease(fs, path, url, seconds=10) for _ in range(2))
    stale = first._read()  # both read the expired lease...
    second.acquire()  # ...the second takes it over first
    reads = iter([stale])
    monkeypatch.setattr(first, "_read", lambda: next(reads, None) or RunLease._read(first))
    with pytest.raises(RunLocked, match=r"in use by another training"):
        first.acquire()
    assert json.loads(fs.cat_file(path))["holder"] == second.record["holder"]


# ---- transient faults: a sync that fails for a moment is marked retryable, nothing else -----
@pytest.mark.parametrize("error", [("ServiceUnavailable", 503), ("SlowDown", 503),
                                   ("InternalError", 500), "timeout"])
def test_a_transient_s3_fault_in_a_push_is_marked_retryable_and_a_retry_completes_it(
        url, tmp_path, s3_faults, error):
    error = TimeoutError("read timed out") if error == "timeout" else s3_faults.error(*error)
    a, b = RunStore(url, mirror=tmp_path / "a"), RunStore(url, mirror=tmp_path / "b")
    a.open(MANIFEST, resume=False)
    a.push()
    a.write_table("skips", 1, pa.Table.from_pylist([dict(iteration=1, reason="x")]))
    a.mark_done(1, "propose", {})
    s3_faults.fail_first(a.remote.fs, "put_file", error)
    with pytest.raises(TransientStorageError, match="pushing s3://.* failed, possibly"):
        a.push()
    a.pull()  # what a retried task does: pull, skip the stage marked done, push
    a.push()
    b.pull()
    assert b.stage_done(1, "propose") and b.read_table("skips", 1).num_rows == 1


def test_a_transient_fault_in_a_pull_is_retryable_and_a_denied_request_is_not(
        url, tmp_path, s3_faults):
    a = RunStore(url, mirror=tmp_path / "a")
    a.open(MANIFEST, resume=False)
    a.push()
    b = RunStore(url, mirror=tmp_path / "b")
    s3_faults.fail_first(b.remote.fs, "get_file", s3_faults.error("ServiceUnavailable", 503))
    with pytest.raises(TransientStorageError):
        b.pull()
    assert b.pull().exists()
    denied = s3_faults.error("AccessDenied", 403)
    s3_faults.fail_first(a.remote.fs, "put_file", denied)
    a.write_table("skips", 1, pa.Table.from_pylist([dict(iteration=1, reason="x")]))
    with pytest.raises(PermissionError) as caught:
        a.push()
    assert not isinstance(caught.value, TransientStorageError)
    assert not is_transient(denied) and is_transient(s3_faults.error("SlowDown", 503))
