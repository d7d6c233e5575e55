"""A run at an s3:// URL against a real S3 API (moto's server on loopback, through s3fs): the
round trip between two workers, and the lease's conditional writes."""

import json

import fsspec
import pyarrow as pa
import pytest

from storage import RunLocked, RunStore
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
