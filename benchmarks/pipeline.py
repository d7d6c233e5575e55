"""Orchestration overhead per iteration: Prefect's task machinery plus the artifacts' Parquet I/O.

    python benchmarks/pipeline.py [--iterations 20] [--run runs/smoke]

1. A flow with the training flow's shape (propose, solve, score, update, publish tasks with the
   same options, two artifacts and a progress update per iteration) whose tasks do nothing:
   what Prefect itself costs per iteration (ephemeral API, as `ireasoner train` runs it).
2. Writing and reading one iteration's tables (questions, rollouts, steps, rewards, groups,
   metrics) at the paper's size (B = 1, N = 5, 256-token rollouts, 8 steps) with the store.
3. Both as a fraction of a smoke iteration (from `--run`'s metrics, if given) and of a
   paper-sized iteration (~50 s: the paper's 35 h for 2,500 iterations).

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.artifacts import (  # noqa: E402
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE  # noqa: E402

from ireasoner.trainers.registry import trainer_spec  # noqa: E402
from storage import RunStore  # noqa: E402

TABLES = {table.name: table for table in trainer_spec("ireasoner").all_tables()}

PAPER_ITERATION_SECONDS = 35 * 3600 / 2500
_TASK = dict(cache_policy=NO_CACHE, persist_result=False)


@task(name="propose", **_TASK)
def _propose(ctx, iteration): return iteration


@task(name="solve", **_TASK)
def _solve(ctx, iteration): return iteration


@task(name="score", **_TASK)
def _score(ctx, iteration): return iteration


@task(name="update", **_TASK)
def _update(ctx, iteration): return iteration


@task(name="publish", **_TASK)
def _publish(ctx, iteration):
    rows = [{"image": "img", "rollout": i, "r_sol": 0.5} for i in range(5)]
    create_table_artifact(table=rows, key=f"iteration-{iteration:06d}-rollouts")
    create_markdown_artifact(markdown=f"# Iteration {iteration}\n", key=f"iteration-{iteration:06d}-summary")


@flow(name="ireasoner-overhead")
def _shape(iterations: int) -> list[float]:
    ctx = object()
    progress = create_progress_artifact(progress=0.0)
    times = []
    for iteration in range(1, iterations + 1):
        start = time.perf_counter()
        for step in (_propose, _solve, _score, _update, _publish):
            step(ctx, iteration)
        update_progress_artifact(progress, progress=100.0 * iteration / iterations)
        times.append(time.perf_counter() - start)
    return times


def _paper_tables(iteration: int) -> dict[str, object]:
    n, steps, tokens = 5, 8, 256
    text = "Step 1: the bar for B is 42. " * 20
    question = dict(iteration=iteration, image_index=0, image_id="img", image_sha256="0" * 64,
                    source_ref="a.png", prompt="p" * 300, raw_output="<question>q</question>",
                    question="What is the largest value?", parse_status="ok",
                    proposer_logprob=-12.5, token_ids=list(range(40)), num_tokens=40,
                    finish_reason="stop", seed=1, rationale="r" * 80)
    rollouts = [dict(iteration=iteration, image_index=0, rollout_index=i, image_id="img", seed=1,
                     text=text, token_ids=list(range(tokens)), num_tokens=tokens,
                     finish_reason="stop", logprob_sum=-80.0, decode_errors=False)
                for i in range(n)]
    step_rows = [dict(iteration=iteration, image_index=0, rollout_index=i, step_index=j + 1,
                      text=text[:80], similarity=0.9, loo_similarity=0.8)
                 for i in range(n) for j in range(steps)]
    rewards = [dict(iteration=iteration, image_index=0, rollout_index=i, image_id="img",
                    parse_status="ok", answer_raw="42", answer="42", num_steps=steps,
                    steps_total=steps, words_before_answer=120, in_group=True, r_ans=0.7,
                    r_step=0.6, r_sol=0.65) for i in range(n)]
    group = dict(iteration=iteration, image_index=0, image_id="img", question="q",
                 dominant_answer="42", valid_answers=n, entropy=0.5, density=0.8,
                 group_fraction=0.8, proposer_reward=0.4, lam=0.3, valid_positions=8,
                 mean_steps=8.0, mean_step_similarity=0.9, disagreement=[0.1] * steps)
    metrics = {"iteration": iteration, "proposer_updated": False, "disagreement": [0.1] * steps}
    return {"questions": [question], "rollouts": rollouts, "steps": step_rows,
            "rewards": rewards, "groups": [group], "metrics": [_full_metrics(metrics)]}


def _full_metrics(partial: dict) -> dict:
    row = {f.name: None if pa.types.is_list(f.type) else 0.5 for f in TABLES["metrics"].schema}
    row.update(partial)
    return row


def _parquet_seconds(iterations: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        for iteration in range(1, iterations + 1):
            tables = {name: TABLES[name].build(rows)
                      for name, rows in _paper_tables(iteration).items()}
            start = time.perf_counter()
            for name, table in tables.items():
                store.write_table(name, iteration, table)
                store.mark_done(iteration, name, {"seconds": 0.0})
            for name in tables:
                store.read_table(name, iteration)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--run", type=Path, help="a finished smoke run, for its iteration time")
    args = parser.parse_args()

    start = time.perf_counter()
    prefect_times = _shape(args.iterations)
    total = time.perf_counter() - start
    prefect = statistics.median(prefect_times[1:] or prefect_times)
    parquet = statistics.median(_parquet_seconds(args.iterations))
    overhead = prefect + parquet
    print(f"machine: {os.cpu_count()} CPU cores")
    print(f"Prefect flow of {args.iterations} no-op iterations: {total:.2f} s in all "
          f"(start-up of the ephemeral API included)")
    print(f"Prefect task machinery per iteration (median): {prefect * 1000:8.1f} ms")
    print(f"Parquet I/O per paper-sized iteration (median):  {parquet * 1000:8.1f} ms")
    print(f"orchestration overhead per iteration:            {overhead * 1000:8.1f} ms "
          f"(goal < 500 ms)")
    print(f"  as a fraction of a paper-sized iteration (~{PAPER_ITERATION_SECONDS:.0f} s): "
          f"{100 * overhead / PAPER_ITERATION_SECONDS:.2f} % (goal < 2 %)")
    if args.run:
        metrics = pl.read_parquet(str(args.run / "metrics" / "*.parquet"))
        smoke = float(metrics["seconds_total"].median())
        print(f"  as a fraction of a smoke iteration ({smoke:.2f} s of stage time): "
              f"{100 * overhead / smoke:.1f} %")


if __name__ == "__main__":
    main()
