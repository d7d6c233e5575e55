"""Both trainers' stages on a CUDA GPU with the tiny model in bf16, without Prefect (a lent GPU
machine has none): iReasoner for 3 iterations, then a 4th from a fresh context as a resume does,
and IVR-R1 for 2 iterations. Prints each stage's seconds and checks what the run wrote.

    python scripts/gpu_smoke.py RUNS_DIR                 # the flow adds only orchestration
    python scripts/gpu_smoke.py RUNS_DIR --device cpu    # a dry run of this script, fp32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
import torch

from ireasoner.config import load_config
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.prepare import prepare
from ireasoner.pipeline.run import open_run
from ireasoner.pipeline.runner import run_stage
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore


def train(config: str, device: str, run_dir: Path, iterations: int, resume: bool) -> RunStore:
    dtype = "bfloat16" if device == "cuda" else "float32"
    cfg = load_config(config, [f"model.device={device}", f"model.dtype={dtype}",
                               f"storage.run_dir={run_dir}",
                               f"schedule.iterations={iterations}"])
    store = RunStore(run_dir)
    with store.lock(cfg.storage.lease_seconds):
        cfg, trainer = open_run(store, cfg, trainer_spec, resume=resume)
        ctx = RunContext(cfg, store, trainer)
        try:
            run_stage(ctx, 0, "prepare", prepare)
            for iteration in range(store.completed_iterations() + 1, iterations + 1):
                for stage, fn in trainer.stages:
                    info = run_stage(ctx, iteration, stage, fn)
                    print(f"{cfg.trainer.kind:<10} iteration {iteration} {stage:<9}"
                          f"{info['seconds']:8.2f} s", flush=True)
        finally:
            ctx.close()
    return store


def check(store: RunStore, table: str, iterations: int) -> None:
    frame = store.scan(table).collect()
    numbers = frame.select(pl.selectors.float())
    assert frame["iteration"].n_unique() == iterations, frame["iteration"].unique()
    assert store.completed_iterations() == iterations
    assert store.checkpoints(), "no checkpoint written"
    finite = all(numbers[c].drop_nulls().drop_nans().is_finite().all() for c in numbers.columns)
    print(f"{store.root}: {table} {frame.height} rows over {iterations} iterations, "
          f"finite: {finite}, checkpoints {[i for i, _ in store.checkpoints()]}")
    assert finite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here (--device cpu runs the script on the CPU)")
    smoke, ivr = "configs/smoke.yaml", "configs/ivr_r1_smoke.yaml"
    train(smoke, args.device, args.runs / "ireasoner", 3, resume=False)
    check(train(smoke, args.device, args.runs / "ireasoner", 4, resume=True), "rewards", 4)
    check(train(ivr, args.device, args.runs / "ivr", 2, resume=False), "ivr_rewards", 2)
    if args.device == "cuda":
        print(f"{torch.cuda.get_device_name()}: peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
