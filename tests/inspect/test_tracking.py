"""The trackers write what the store holds, each iteration once across a resume: read back from
TensorBoard's event files, the MLflow store and W&B's offline run files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ireasoner.config import Config, LoggingConfig, SolverConfig
from ireasoner.eval.runner import RESULTS_SCHEMA
from ireasoner.inspect.tracking import RunTracking
from tests.inspect.conftest import IREASONER, build_run

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")


def _config(tracking_dir: Path) -> Config:
    return Config(solver=SolverConfig(num_rollouts=3),
                  logging=LoggingConfig(trackers=["tensorboard", "mlflow", "wandb"],
                                        samples_every=2, samples=4, dir=str(tracking_dir)))


def _write_eval(root: Path, label: str, value: float) -> None:
    rows = [dict(checkpoint=label, task="ireasoner_synth", metric="accuracy", value=value,
                 samples=2, seconds=1.0, status="ok", error=None, timestamp="2026-01-01T00:00:00Z"),
            dict(checkpoint=label, task="chartqa", metric=None, value=None, samples=None,
                 seconds=0.1, status="failed", error="no data", timestamp="2026-01-01T00:00:00Z")]
    (root / "eval" / label).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA),
                   root / "eval" / label / "results.parquet")


def _tensorboard(tracking_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tracking_dir / "tensorboard"))
    events.Reload()
    return {"kl": [(e.step, round(e.value, 6)) for e in events.Scalars("train/solver_kl")],
            "eval": [(e.step, e.value) for e in events.Scalars("eval/ireasoner_synth/accuracy")],
            "samples": [e.step for e in events.Tensors("samples/text_summary")],
            "text": events.Tensors("samples/text_summary")[0].tensor_proto.string_val[0].decode()}


def _mlflow(tracking_dir: Path, run_id: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tracking_dir / 'mlflow.db'}")
    kl = client.get_metric_history(run_id, "train/solver_kl")
    accuracy = client.get_metric_history(run_id, "eval/ireasoner_synth/accuracy")
    samples = [a.path for a in client.list_artifacts(run_id, "samples")]
    table = json.loads((Path(client.download_artifacts(run_id, samples[0]))).read_text())
    return {"kl": sorted((m.step, round(m.value, 6)) for m in kl),
            "eval": [(m.step, m.value) for m in accuracy], "samples": samples,
            "params": client.get_run(run_id).data.params, "table": table}


def _wandb(tracking_dir: Path) -> dict:
    """The history records of every offline run file (a resume starts another one)."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    rows, ids = [], set()
    for path in sorted(tracking_dir.glob("wandb/offline-run-*/run-*.wandb")):
        ids.add(path.stem.removeprefix("run-"))
        store = DataStore()
        store.open_for_scan(str(path))
        while (data := store.scan_data()) is not None:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    kl = sorted((r["iteration"], round(r["train/solver_kl"], 6)) for r in rows
                if "train/solver_kl" in r)
    return {"kl": kl, "ids": ids,
            "eval": [(r["iteration"], r["eval/ireasoner_synth/accuracy"]) for r in rows
                     if "eval/ireasoner_synth/accuracy" in r],
            "samples": [(r["iteration"], r["samples/nrows"]) for r in rows
                        if "samples/nrows" in r]}


def test_each_tracker_logs_every_completed_iteration_once_across_a_resume(tmp_path):
    store = build_run(tmp_path / "run")
    tracking_dir = tmp_path / "tracking"
    cfg = _config(tracking_dir)
    for t in (1, 2):
        store.mark_done(t, "update", {})
    _write_eval(store.root, "iter-000002", 0.5)

    with RunTracking(store, cfg, "rewards", IREASONER.metrics.name) as tracking:
        assert tracking.log_completed() == 2
        assert tracking.log_completed() == 0  # nothing new
    state = json.loads((tracking_dir / "logged.json").read_text())
    assert {name: s["iteration"] for name, s in state.items()} == {
        "tensorboard": 2, "mlflow": 2, "wandb": 2}

    # A resumed process: iteration 3 completed since; iterations 1 and 2 are not logged again.
    store.mark_done(3, "update", {})
    with RunTracking(store, cfg, "rewards", IREASONER.metrics.name) as tracking:
        assert tracking.log_completed() == 1

    per_iteration = [(1, 0.01), (2, 0.01), (3, 0.01)]
    board = _tensorboard(tracking_dir)
    assert board["kl"] == per_iteration
    assert board["eval"] == [(2, 0.5)]
    assert board["samples"] == [2]  # samples_every = 2
    assert "Combien de côtés" in board["text"] and "r_sol" in board["text"]

    flow = _mlflow(tracking_dir, state["mlflow"]["run_id"])
    assert flow["kl"] == per_iteration and flow["eval"] == [(2, 0.5)]
    assert flow["samples"] == ["samples/iteration-000002.json"]
    assert flow["params"]["solver.num_rollouts"] == "3"
    assert len(flow["table"]["data"]) == 4 and "answer" in flow["table"]["columns"]

    weights = _wandb(tracking_dir)
    assert weights["ids"] == {state["wandb"]["run_id"]}  # the resume continues the same run
    assert weights["kl"] == per_iteration
    assert weights["eval"] == [(2, 0.5)]
    assert weights["samples"] == [(2, 4)]


def test_no_trackers_write_nothing(tmp_path):
    store = build_run(tmp_path / "run")
    store.mark_done(1, "update", {})
    with RunTracking(store, Config(), "rewards") as tracking:
        assert tracking.log_completed() == 0
    assert not (store.root / "tracking").exists()
