"""Memory and file descriptors over a long run: trains the miniature world for 500 iterations
(CPU, in-process Prefect, compaction every 100) in a subprocess and samples its resident memory
and open descriptors once per completed iteration (when the iteration's last stage marker
appears). Prints the slope of RSS after the first 50 iterations in MB per 100 iterations and
the descriptor growth, and writes the samples as Parquet.

    python benchmarks/soak.py [--iterations 500] [--images 1] [--out soak.parquet]

Goal (issue 17): RSS grows < 5 MB per 100 iterations after iteration 50; descriptors do not
grow. Sampling reads /proc (Linux).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _done(run: Path, iteration: int) -> bool:
    return (run / "stages" / f"{iteration:06d}" / "update.json").is_file()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--images", type=int, default=1, help="images per iteration")
    parser.add_argument("--warmup", type=int, default=50, help="iterations left out of the slope")
    parser.add_argument("--out", default="soak.parquet")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop the run then and report the iterations it reached")
    args = parser.parse_args()
    run = Path(tempfile.mkdtemp(prefix="soak-")) / "run"
    command = [sys.executable, "-m", "flows.cli", "-q", "train", "--config", "configs/world.yaml",
               "--run-dir", str(run), "--set", f"schedule.iterations={args.iterations}",
               "--set", f"schedule.images_per_iteration={args.images}",
               "--set", "storage.compact_every=100"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log = open(run.parent / "train.log", "w")  # noqa: SIM115 - open for the child's lifetime
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    rows, next_iteration, start = [], 1, time.perf_counter()
    while child.poll() is None and next_iteration <= args.iterations:
        if args.max_seconds and time.perf_counter() - start > args.max_seconds:
            child.terminate()
            print(f"stopped after {args.max_seconds:.0f} s (--max-seconds)")
            break
        if _done(run, next_iteration):
            rows.append({"iteration": next_iteration, "rss_mb": _rss_mb(child.pid),
                         "fds": _fds(child.pid), "seconds": time.perf_counter() - start})
            next_iteration += 1
        else:
            time.sleep(0.05)
    child.wait()
    stopped = args.max_seconds and next_iteration <= args.iterations
    if (child.returncode != 0 and not stopped) or len(rows) <= args.warmup + 1:
        print(f"training exited {child.returncode}; log: {run.parent / 'train.log'}")
        return 1
    samples = pl.DataFrame(rows)
    samples.write_parquet(args.out)
    late = samples.filter(pl.col("iteration") > args.warmup)
    slope = float(np.polyfit(late["iteration"].to_numpy(), late["rss_mb"].to_numpy(), 1)[0])
    print(f"{samples.height} iterations in {samples['seconds'][-1]:.0f} s "
          f"(run {run}, samples {args.out})")
    print(f"RSS: {samples['rss_mb'][0]:.0f} MB after iteration 1, "
          f"{late['rss_mb'][0]:.0f} MB after {args.warmup + 1}, "
          f"{samples['rss_mb'][-1]:.0f} MB at the end; "
          f"slope after {args.warmup}: {100 * slope:+.2f} MB per 100 iterations (goal < 5)")
    print(f"open descriptors: {late['fds'].min()}..{late['fds'].max()} after {args.warmup} "
          f"(first {samples['fds'][0]}, last {samples['fds'][-1]}; goal: no growth)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
