"""How fast can a whole run's artifacts be queried? (goal: (a) and (b) under 1 s)

Synthesises the tables of a paper-sized run (2,500 iterations, B = 1 image, N = 5 rollouts, up
to 8 steps each, ~250-token rollouts) with the tables' own `build` and the store's `write_table`, then
times the reads the report and `ireasoner traces` do, on the per-iteration files as the stages
write them, then again after `compact_run` (storage.compaction) merged them into chunks:

    (a) per-iteration diagnostics over the whole run (groups + rewards tables), polars
    (b) every step of one image across the run (questions -> steps), polars
    (c) the same as (b) in duckdb over read_parquet('<run>/steps/*.parquet')
    (d) format_traces of the latest iteration, and of one image across the run
    (e) write_report: the four figures and the page over the whole run
    (f) RunStore.read_table of one iteration (what training and rescoring do)

and prints the size of the artifacts on disk. Each layout is timed in a fresh process: "first"
is its first call there (nothing cached by polars or duckdb; the OS page cache is warm, the
files having just been written), "best" the best of 3.

    .venv/bin/python benchmarks/pipeline_queries.py [--iterations 2500] [--every 100]
                                                    [--run-dir DIR]

--run-dir keeps the synthetic run there (reused when it already holds one; a compacted one is
only timed compacted).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np

from ireasoner.config import Config
from ireasoner.inspect.queries import image_steps, iteration_summary
from ireasoner.inspect.report import write_report
from ireasoner.inspect.traces import format_traces
from ireasoner.pipeline.run import open_run
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore, compact_run

IREASONER = trainer_spec("ireasoner")
TABLES = {table.name: table for table in IREASONER.all_tables()}

N, MAX_STEPS, IMAGES = 5, 8, 500
WORDS = ("the bar chart shows value axis label triangle angle sum of interior degrees so we "
         "subtract compare largest smallest equals therefore answer is").split()


def synthesise(store: RunStore, iterations: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for t in range(1, iterations + 1):
        for name, rows in _iteration_rows(rng, t).items():
            store.write_table(name, t, TABLES[name].build(rows))
        store.mark_done(t, "update", {})  # complete, so compaction may merge it


def _iteration_rows(rng: np.random.Generator, t: int) -> dict[str, list[dict]]:
    image_id = f"img-{rng.integers(IMAGES):05d}"
    key = dict(iteration=t, image_index=0)
    question = _sentence(rng, 15) + "?"
    answers = [str(a) if a < 4 else None for a in rng.integers(0, 5, N)]
    in_group = [a == answers[0] and a is not None for a in answers]
    step_counts = rng.integers(0, MAX_STEPS + 1, N)
    rewards = rng.random((N, 3))
    return {
        "questions": [dict(**key, image_id=image_id, image_sha256="0" * 64, source_ref=None,
                           prompt=_sentence(rng, 40), raw_output=f"<question>{question}</question>",
                           question=question, parse_status="ok", proposer_logprob=-30.0,
                           token_ids=_tokens(rng, 20), num_tokens=20, finish_reason="stop", seed=t,
                           rationale=_sentence(rng, 12))],
        "rollouts": [dict(**key, rollout_index=i, image_id=image_id, seed=t * N + i,
                          text=_sentence(rng, 200), token_ids=_tokens(rng, 256), num_tokens=256, finish_reason="stop",
                          logprob_sum=-300.0, decode_errors=False) for i in range(N)],
        "steps": [dict(**key, rollout_index=i, step_index=j, text=_sentence(rng, 25),
                       similarity=float(rng.random()) if in_group[i] else None,
                       loo_similarity=float(rng.random()) if in_group[i] else None)
                  for i in range(N) for j in range(1, step_counts[i] + 1)],
        "rewards": [dict(**key, rollout_index=i, image_id=image_id, parse_status="ok",
                         answer_raw=answers[i], answer=answers[i], num_steps=int(step_counts[i]),
                         steps_total=int(step_counts[i]), words_before_answer=150,
                         in_group=in_group[i], r_ans=float(rewards[i, 0]),
                         r_step=float(rewards[i, 1]), r_sol=float(rewards[i, 2]))
                    for i in range(N)],
        "updates": [dict(iteration=t, role="solver", step=t, source_iteration=t, image_index=0,
                         rollout_index=i, off_policy=False, reward=float(rewards[i, 2]),
                         baseline=0.5, advantage=float(rewards[i, 2]) - 0.5, kl=0.01,
                         beta=1e-3, tokens=256, nll=1.5, grad_norm=0.3) for i in range(N)],
        "groups": [dict(**key, image_id=image_id, question=question, dominant_answer=answers[0],
                        valid_answers=sum(a is not None for a in answers),
                        entropy=float(rng.random()), density=float(rng.random()),
                        group_fraction=sum(in_group) / N, proposer_reward=float(rng.random()),
                        lam=0.0, valid_positions=int(rng.integers(MAX_STEPS)),
                        mean_steps=float(step_counts.mean()),
                        mean_step_similarity=float(rng.random()),
                        disagreement=list(rng.random(MAX_STEPS)))],
        "metrics": [{**{name: float(rng.random()) for name in TABLES["metrics"].schema.names},
                     "iteration": t, "proposer_updated": t % 5 == 0,
                     "disagreement": list(rng.random(MAX_STEPS))}],
    }


def _tokens(rng: np.random.Generator, count: int) -> list[int]:
    return rng.integers(0, 151_000, count).tolist()


def _sentence(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, words))


def duckdb_image_steps(root: Path, image_id: str) -> list[tuple]:
    return duckdb.sql(f"""
        SELECT s.* FROM read_parquet('{root}/steps/*.parquet') s
        JOIN (SELECT iteration, image_index FROM read_parquet('{root}/questions/*.parquet')
              WHERE image_id = $image) q USING (iteration, image_index)
        ORDER BY iteration, image_index, rollout_index, step_index
    """, params={"image": image_id}).fetchall()


def timed(label: str, query: Callable[[], object], repeats: int = 3) -> float:
    """Runs `query` `repeats` times; prints the first and best seconds and what it returned;
    returns the slower of the two (the first)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = query()
        seconds.append(time.perf_counter() - start)
    print(f"{label:<52} first {seconds[0]:6.3f} s  best {min(seconds):6.3f} s  -> {result}")
    return seconds[0]


def disk_usage(root: Path) -> None:
    total_files = total_bytes = 0
    for name in TABLES:
        files = list((root / name).glob("*.parquet"))
        size = sum(f.stat().st_size for f in files)
        total_files, total_bytes = total_files + len(files), total_bytes + size
        if files:
            print(f"  {name:<10} {len(files):6d} files {size / 2**20:8.2f} MiB")
    print(f"  {'total':<10} {total_files:6d} files {total_bytes / 2**20:8.2f} MiB")


def time_queries(root: Path, layout: str, report_dir: Path) -> None:
    """Every query once per layout, in the process this runs in (a fresh one: see main)."""
    store = RunStore(root)
    last = store.completed_iterations()
    image = store.read_table("questions", last)["image_id"][0].as_py()
    print(f"\n{layout}: artifacts on disk ({store.root}):")
    disk_usage(store.root)
    goal = [timed("(a) per-iteration diagnostics, polars",
                  lambda: f"{iteration_summary(store).height} rows"),
            timed(f"(b) steps of {image} across the run, polars",
                  lambda: f"{image_steps(store, image).height} rows")]
    timed(f"(c) steps of {image} across the run, duckdb",
          lambda: f"{len(duckdb_image_steps(store.root, image))} rows")
    timed("(d) format_traces, latest iteration",
          lambda: f"{len(format_traces(store).splitlines())} lines")
    timed(f"(d) format_traces, {image} across the run",
          lambda: f"{len(format_traces(store, image_id=image).splitlines())} lines")
    timed("(e) write_report, whole run",
          lambda: write_report(store, report_dir).name, repeats=1)
    timed(f"(f) read_table: rollouts of iteration {last // 2}",
          lambda: f"{store.read_table('rollouts', last // 2).num_rows} rows")
    print(f"goal (a) and (b) < 1 s on the first run: {'met' if max(goal) < 1 else 'NOT met'}")


def _in_fresh_process(root: Path, layout: str, report_dir: Path) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=time_queries, args=(root, layout, report_dir))
    process.start()
    process.join()
    if process.exitcode:
        raise SystemExit(f"timing the {layout} layout failed (exit code {process.exitcode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2500)
    parser.add_argument("--every", type=int, default=100, help="iterations per chunk")
    parser.add_argument("--run-dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(args.run_dir or Path(tmp) / "run")
        if not store.has_table("groups", args.iterations):
            start = time.perf_counter()
            open_run(store, Config(), trainer_spec, resume=False)
            synthesise(store, args.iterations)
            print(f"synthesised {args.iterations} iterations in "
                  f"{time.perf_counter() - start:.1f} s")
        if not store.table_folder("groups").chunks:
            _in_fresh_process(store.root, "per-iteration files", Path(tmp) / "report")
            start = time.perf_counter()
            chunks = compact_run(store, args.every)
            print(f"\ncompact_run(every={args.every}): {len(chunks)} chunk files in "
                  f"{time.perf_counter() - start:.1f} s")
        _in_fresh_process(store.root, f"compacted (every {args.every})", Path(tmp) / "report")
        print("load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
