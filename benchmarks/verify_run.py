"""How long does the integrity check take on a paper-sized run? (storage.integrity)

Writes a synthetic run of `--iterations` iterations through the store as the stages do (four
stages, eight small tables an iteration, each stage's marker recording its files; the last
iteration's checkpoint a 4 MB safetensors file), then times `RunStore.verify()` (what every
`train --resume` does: sizes of recorded files, footers of unrecorded ones) and
`verify(full=True)` (what `ireasoner repair` does: sha256 too), on the per-iteration files and
again after compaction every `--every` iterations.

    .venv/bin/python benchmarks/verify_run.py [--iterations 2500] [--every 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import torch
from safetensors.torch import save_file

from storage import COMPLETE_MARKER, RunStore, atomic_write_bytes, compact_run

STAGES = (("propose", ["questions"]), ("solve", ["rollouts"]),
          ("score", ["steps", "rewards", "groups"]), ("update", ["updates", "metrics"]))


def _table(iteration: int, rows: int = 5) -> pa.Table:
    return pa.table({"iteration": pa.array([iteration] * rows, pa.int32()),
                     "value": pa.array([0.5] * rows)})


def build(root: Path, iterations: int) -> RunStore:
    store = RunStore(root)
    store.open({"stages": [stage for stage, _ in STAGES]}, resume=False)
    for iteration in range(1, iterations + 1):
        for stage, tables in STAGES:
            store.start_stage()
            for name in tables:
                store.write_table(name, iteration, _table(iteration))
            if stage == "update" and iteration == iterations:
                path = store.checkpoint_dir(iteration)
                path.mkdir(parents=True)
                save_file({"w": torch.zeros(1_000_000)}, str(path / "w.safetensors"))
                atomic_write_bytes(path / COMPLETE_MARKER, b"done\n")
                store.record_files(path)
            store.mark_done(iteration, stage, {})
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2500)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        start = time.perf_counter()
        store = build(Path(tmp) / "run", args.iterations)
        print(f"built {args.iterations} iterations in {time.perf_counter() - start:.0f} s")
        for layout in ("per-iteration files", f"compacted every {args.every}"):
            if layout.startswith("compacted"):
                compact_run(store, args.every)
            files = sum(1 for _ in store.root.rglob("*.parquet"))
            for full in (False, True):
                start = time.perf_counter()
                damage = store.verify(full=full)
                print(f"{layout} ({files} Parquet files): verify(full={full}) "
                      f"{time.perf_counter() - start:.2f} s, {len(damage)} damaged")


if __name__ == "__main__":
    main()
