"""Prefect retries an idempotent task only for a transient storage fault (injected into the real
S3 server's uploads): the retried stage is not run twice; any other failure fails at once."""

import errno

import pyarrow as pa
import pytest
from prefect import flow

from flows.train import stage_task
from ireasoner.config import load_config
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.run import open_run
from ireasoner.trainers.registry import trainer_spec
from storage import DiskFull, RunStore
from storage.atomic import disk_full_named

pytestmark = pytest.mark.slow  # an ephemeral Prefect API per test


def _context(url: str, mirror) -> RunContext:
    cfg = load_config(None, [f"storage.run_dir={url}"])
    store = RunStore(url, mirror=mirror)
    cfg, trainer = open_run(store, cfg, trainer_spec, resume=False)
    store.push()
    return RunContext(cfg, store, trainer)


def _run(ctx: RunContext, fn) -> None:
    task = stage_task.with_options(name="propose", retry_delay_seconds=0)

    @flow(name="retry-test")
    def one_stage() -> dict:
        return task(ctx, 1, "propose", fn)

    one_stage()


def test_a_stage_whose_push_hits_a_503_is_retried_and_runs_once(s3_bucket, tmp_path,
                                                                 s3_faults):
    url = f"{s3_bucket}/retried"
    ctx = _context(url, tmp_path / "mirror")
    calls = []

    def stage(ctx, iteration):
        calls.append(iteration)
        ctx.store.write_table("skips", iteration, pa.Table.from_pylist([dict(iteration=1)]))
        return {}

    puts = s3_faults.fail_first(ctx.store.remote.fs, "put_file",
                                s3_faults.error("ServiceUnavailable", 503), times=2)
    _run(ctx, stage)
    assert calls == [1]  # the retries only finished the sync
    assert len(puts) > 2
    reader = RunStore(url, mirror=tmp_path / "reader").pull()
    assert reader.stage_done(1, "propose") and reader.has_table("skips", 1)


def test_a_stage_that_fails_by_itself_is_not_retried(s3_bucket, tmp_path):
    ctx = _context(f"{s3_bucket}/not-retried", tmp_path / "mirror")
    calls = []

    def stage(ctx, iteration):
        calls.append(iteration)
        raise ValueError("a bug in the stage")

    with pytest.raises(ValueError, match="a bug in the stage"):
        _run(ctx, stage)
    assert calls == [1]


def test_a_full_disk_is_not_retried(s3_bucket, tmp_path):
    ctx = _context(f"{s3_bucket}/disk-full", tmp_path / "mirror")
    calls = []

    def stage(ctx, iteration):  # its write fails as the OS reports a full disk
        calls.append(iteration)
        with disk_full_named(ctx.store.table_path("skips", iteration)):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull, match="skips/000001.parquet: the disk is full"):
        _run(ctx, stage)
    assert calls == [1]
