"""A full disk and damaged files: DiskFull names the file and leaves nothing partial (the disk
fills at the OS boundary, through tests/fixtures/enospc.c); what a stage marker records finds
truncated, corrupt and missing files, and names the stage that wrote them."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from safetensors.torch import save_file

from storage import COMPLETE_MARKER, DamagedRun, RunStore, compact_run
from storage.atomic import DiskFull, is_disk_full
from storage.integrity import check_file

REPO = Path(__file__).resolve().parents[2]


def _table(iteration, n=3):
    return pa.table({"iteration": pa.array([iteration] * n, pa.int32()),
                     "r_step": pa.array([0.5] * n)})


def _write_in_subprocess(code: str, env: dict[str, str], tmp_path: Path) -> str:
    """Run `code` (with `run` = tmp_path / "run") under a full disk; returns its stderr."""
    script = f"from pathlib import Path\nrun = Path({str(tmp_path / 'run')!r})\n"
    result = subprocess.run([sys.executable, "-c", script + textwrap.dedent(code)], cwd=REPO,
                            env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True,
                            text=True, timeout=120)
    return result.stdout + result.stderr


def test_a_full_disk_during_a_table_write_names_the_file_and_leaves_nothing_partial(
        tmp_path, enospc_preload):
    store = RunStore(tmp_path / "run")
    store.write_table("rewards", 1, _table(1, 2000))
    before = (tmp_path / "run" / "rewards" / "000001.parquet").read_bytes()
    out = _write_in_subprocess("""
        import pyarrow as pa
        from storage import RunStore, DiskFull
        table = pa.table({"iteration": pa.array([1] * 2000, pa.int32()),
                          "r_step": pa.array([0.25] * 2000)})
        try:
            RunStore(run).write_table("rewards", 1, table)
        except DiskFull as err:
            print("DISKFULL", err)
    """, enospc_preload("/rewards/", after=100), tmp_path)
    assert "DISKFULL cannot write" in out and "000001.parquet: the disk is full" in out, out
    assert "--resume" in out
    # The old whole file is still there; the temporary is gone.
    assert [p.name for p in (tmp_path / "run" / "rewards").iterdir()] == ["000001.parquet"]
    assert (tmp_path / "run" / "rewards" / "000001.parquet").read_bytes() == before


def test_a_full_disk_during_a_checkpoint_write_leaves_no_checkpoint(tmp_path, enospc_preload):
    out = _write_in_subprocess("""
        import torch
        from safetensors.torch import save_file
        from storage import DiskFull
        from storage.atomic import atomic_dir
        try:
            with atomic_dir(run / "checkpoints" / "iter-000001") as tmp:
                save_file({"w": torch.zeros(4096)}, str(tmp / "w.safetensors"))
        except DiskFull as err:
            print("DISKFULL", err)
    """, enospc_preload("/checkpoints/", after=1000), tmp_path)
    assert "DISKFULL cannot write" in out and "iter-000001: the disk is full" in out, out
    assert list((tmp_path / "run" / "checkpoints").iterdir()) == []


def test_disk_full_is_recognised_through_native_libraries_messages():
    import errno
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(RuntimeError("Error while serializing: I/O error: No space left on "
                                     "device (os error 28)"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not issubclass(DiskFull, __import__("storage").TransientStorageError)


def _run_with_stages(root: Path) -> RunStore:
    """Two iterations of a two-stage run: 'solve' writes rollouts, 'update' a checkpoint."""
    store = RunStore(root)
    store.open({"stages": ["solve", "update"]}, resume=False)
    for iteration in (1, 2):
        store.start_stage()
        store.write_table("rollouts", iteration, _table(iteration))
        store.mark_done(iteration, "solve", {"rows": 3})
        store.start_stage()
        checkpoint = store.checkpoint_dir(iteration)
        checkpoint.mkdir(parents=True)
        save_file({"w": torch.arange(64.0)}, str(checkpoint / "w.safetensors"))
        (checkpoint / COMPLETE_MARKER).write_text(f"{iteration}\n")
        store.record_files(checkpoint)
        store.mark_done(iteration, "update", {})
    return store


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_markers_record_the_files_their_stage_wrote(tmp_path):
    store = _run_with_stages(tmp_path / "run")
    files = store.stage_files(2, "solve")
    assert list(files) == ["rollouts/000002.parquet"]
    assert files["rollouts/000002.parquet"]["rows"] == 3
    assert "checkpoints/iter-000002/w.safetensors" in store.stage_files(2, "update")
    assert "files" not in store.stage_info(2, "solve")  # a stage's summary stays its own
    assert store.verify(full=True) == []
    store.require_intact()


def test_a_truncated_table_is_named_with_its_iteration_and_stage(tmp_path):
    store = _run_with_stages(tmp_path / "run")
    _truncate(tmp_path / "run" / "rollouts" / "000002.parquet", 100)
    [damage] = store.verify()
    assert (damage.iteration, damage.stage) == (2, "solve")
    assert damage.path.as_posix() == "rollouts/000002.parquet"
    assert damage.problem.startswith("is truncated (100 of ")
    with pytest.raises(DamagedRun) as refused:
        store.require_intact()
    message = str(refused.value)
    assert f"run {store.location}: iteration 2 stage 'solve': " in message
    assert f"ireasoner repair {store.location}" in message


def test_a_truncated_safetensors_file_is_named_with_its_stage(tmp_path):
    store = _run_with_stages(tmp_path / "run")
    _truncate(store.checkpoint_dir(2) / "w.safetensors", 120)
    [damage] = store.verify()
    assert (damage.iteration, damage.stage) == (2, "update")
    assert damage.path.as_posix() == "checkpoints/iter-000002/w.safetensors"


def test_a_flipped_byte_is_found_by_the_full_check_only(tmp_path):
    store = _run_with_stages(tmp_path / "run")
    path = tmp_path / "run" / "rollouts" / "000001.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert store.verify() == []  # same size: the quick check passes
    [damage] = store.verify(full=True)
    assert "sha256" in damage.problem and (damage.iteration, damage.stage) == (1, "solve")


def test_a_missing_file_is_damage_but_a_compacted_one_is_not(tmp_path):
    store = _run_with_stages(tmp_path / "run")
    compact_run(store, 2)  # rollouts 1-2 into one chunk: the recorded files are gone
    assert not (tmp_path / "run" / "rollouts" / "000001.parquet").exists()
    assert store.verify(full=True) == []
    chunk = tmp_path / "run" / "rollouts" / "000001-000002.parquet"
    _truncate(chunk, chunk.stat().st_size - 10)
    [damage] = store.verify()
    assert damage.path.as_posix() == "rollouts/000001-000002.parquet"
    assert (damage.iteration, damage.stage) == (1, "solve")


def test_structure_checks_without_a_record(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(8), "b": torch.ones(8)}, str(path))
    assert check_file(path) is None
    _truncate(path, path.stat().st_size - 4)
    assert "is truncated" in check_file(path)
    table = tmp_path / "t.parquet"
    import pyarrow.parquet as pq
    pq.write_table(_table(1), table)
    assert check_file(table) is None
    _truncate(table, 30)
    assert "is truncated" in check_file(table)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"a": 1})[:-3])
    assert "is corrupt" in check_file(state)
