"""`ireasoner compact`: the run's setting or --every, never while a training holds the run."""

import pyarrow as pa

from flows.cli import main
from ireasoner.config import load_config
from ireasoner.pipeline.run import open_run
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore, run_lock


def _names(store: RunStore, name: str) -> list[str]:
    return sorted(p.name for p in (store.root / name).glob("*.parquet"))


def _run(tmp_path) -> RunStore:
    """A run whose iterations 1..5 are complete, with a steps and a skips file in each."""
    store = RunStore(tmp_path / "run")
    open_run(store, load_config(None, ["storage.compact_every=0"]), trainer_spec,
             resume=False)
    for t in range(1, 7):
        for name in ("steps", "skips"):
            store.write_table(name, t, pa.table({"iteration": pa.array([t], pa.int32())}))
        for stage in store.stages() if t <= 5 else ():
            store.mark_done(t, stage, {})
    return store


def test_compact_cli_uses_the_runs_setting_or_every_and_refuses_a_training_run(tmp_path, capsys):
    store = _run(tmp_path)
    assert main(["compact", str(store.root)]) == 2
    assert "storage.compact_every = 0" in capsys.readouterr().err
    with run_lock(store.root):  # a training holds it
        assert main(["compact", str(store.root), "--every", "2"]) == 2
    assert "in use by another training" in capsys.readouterr().err
    assert _names(store, "steps")[0] == "000001.parquet"

    assert main(["compact", str(store.root), "--every", "4"]) == 0
    assert "2 chunk files written" in capsys.readouterr().out  # steps and skips
    assert _names(store, "steps") == ["000001-000004.parquet", "000005.parquet", "000006.parquet"]
    assert main(["compact", str(tmp_path / "absent"), "--every", "4"]) == 2
    assert "not a run directory" in capsys.readouterr().err
