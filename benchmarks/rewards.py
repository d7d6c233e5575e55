"""Benchmark of the reward core on a run-sized workload (not a test: prints figures).

2,500 groups (one per iteration of the paper's run) x N = 5 rollouts x up to 8 steps, d = 3584
(Qwen2.5-VL-7B's width): parsing of realistic completion text, step embedding from a random
152k x 3584 bf16 table with a word-piece tokenizer built locally, and scoring, each timed on
its own; scoring against the spec's per-rollout loop (ireasoner.rewards.reference: the
benchmark checks that they agree); every way of scoring is timed as the median of five calls.

    .venv/bin/python benchmarks/rewards.py [--groups 2500] [--vocab 152064]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import torch

from ireasoner.answers import normalise_answer
from ireasoner.embeddings import StepEmbedder
from ireasoner.parsing import parse_trace
from ireasoner.rewards import RewardConfig, lambda_at, score_batch, score_group
from ireasoner.rewards.reference import reference_score_group

# The Rust tokenizer's thread pool only adds contention on a 2-core box.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
N, DIM = 5, 3584
WORDS = ("the bar chart shows value of each category axis tallest shortest sum difference "
         "between red blue green count total angle triangle area radius circle equals therefore "
         "so we compute read label legend year percent increase decrease compare first second "
         "third finally answer option remaining side length height width").split()


def completion(rng: np.random.Generator, answer: str) -> str:
    steps = [f"Step {k}: " + " ".join(rng.choice(WORDS, size=rng.integers(8, 30)))
             + f" {rng.integers(0, 100)}." for k in range(1, int(rng.integers(1, 11)))]
    return "<think>\n" + "\n".join(steps) + f"\n</think>\n<answer>{answer}</answer>"


def workload(groups: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    options = ["12", "12.0", "(B) 12 cm", "14", "\\boxed{7}", "C", "3/4"]
    return [[completion(rng, options[min(int(rng.geometric(0.5)) - 1, 6)]) for _ in range(N)]
            for _ in range(groups)]


def tokenizer_for(texts: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2000,
                                                           special_tokens=["[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def random_table(vocab: int) -> torch.Tensor:
    table = torch.empty(vocab, DIM, dtype=torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    for start in range(0, vocab, 8192):
        rows = table[start : start + 8192]
        rows.copy_(torch.randn(rows.shape, generator=generator))
    return table


def floor_seconds(groups, scores, config) -> dict[str, float]:
    """Lower bounds on score_batch's wall time that no implementation of its API escapes here:
    reading the in-group step rows once (at the box's two-thread streaming speed, measured on
    one contiguous buffer of the same size: the real rows are scattered, so this flatters),
    looking at every rollout's array once, and building one GroupScores per group."""
    rows = sum(min(len(e[i]), config.max_steps) for g, s in zip(groups, scores, strict=True)
               for e, i in [(g[1], np.flatnonzero(s.in_group))] for i in i)
    block = torch.ones(2, rows * DIM // 2)
    with ThreadPoolExecutor(2) as pool:  # torch releases the GIL: both cores read
        list(pool.map(torch.sum, block))
        start = time.perf_counter()
        list(pool.map(torch.sum, block))
        read_s = time.perf_counter() - start
    start = time.perf_counter()
    [[a.shape for a in g[1]] for g in groups]
    look_s = time.perf_counter() - start
    start = time.perf_counter()
    [replace(s) for s in scores]
    build_s = time.perf_counter() - start
    return {"read the in-group rows once (2 threads)": read_s,
            "look at each rollout's array once": look_s,
            "build one GroupScores per group": build_s}


def median_time(action, repeats: int = 5):
    """(median seconds of `repeats` calls, the last result): every way of scoring is timed
    alike, so none gains from a warm cache the others did not get. As `timeit` does,
    the cyclic garbage collector is off while a call runs: with this process's ~300k live
    objects one full collection takes ~20 ms, and whether it falls inside a call is chance."""
    seconds = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = action()
            seconds.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return sorted(seconds)[repeats // 2], result


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=2500)
    parser.add_argument("--vocab", type=int, default=152_064)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RewardConfig()
    texts = workload(args.groups)
    embedder = StepEmbedder(tokenizer_for([t for g in texts[:200] for t in g]),
                            random_table(args.vocab), config.step_tokens)
    print(f"setup done, peak RSS {peak_rss_mb():.0f} MB (table {args.vocab} x {DIM} bf16)")

    start = time.perf_counter()
    parsed = [[parse_trace(t, config.max_steps) for t in g] for g in texts]
    answers = [[normalise_answer(p.answer) for p in g] for g in parsed]
    parse_s = time.perf_counter() - start

    start = time.perf_counter()
    embedded = [embedder.embed_traces([p.steps for p in g]) for g in parsed]
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    for first in range(0, args.groups, 100):  # offline rescoring: many groups per call
        embedder.embed_traces([p.steps for g in parsed[first : first + 100] for p in g])
    embed_batched_s = time.perf_counter() - start
    groups = [(a, e, [p.words_before_answer for p in g])
              for a, e, g in zip(answers, embedded, parsed, strict=True)]
    rss_inputs = peak_rss_mb()

    lam = lambda_at(1500, config, 2500)
    batch_s, batch = median_time(lambda: score_batch(groups, lam, config))
    per_iteration_s, per_iteration = median_time(
        lambda: [score_group(*g, lam, config) for g in groups])
    loop_s, loop = median_time(lambda: [reference_score_group(*g, lam, config) for g in groups])

    solver_gap = max(np.abs(np.array(ref.solver) - s.solver).max()
                     for ref, s in zip(loop, batch, strict=True))
    loo_gap = max(np.nanmax(np.abs(ref.loo - s.loo_similarity), initial=0)
                  for ref, s in zip(loop, per_iteration, strict=True))
    assert solver_gap < 1e-5 and loo_gap < 1e-5, (solver_gap, loo_gap)

    steps = sum(len(p.steps) for g in parsed for p in g)
    rate = lambda seconds: f"{args.groups / seconds:>10,.0f}"  # noqa: E731
    print(f"\n{args.groups} groups x N={N}, {steps} steps, d={DIM}")
    print(f"{'stage':<34}{'seconds':>9}{'groups/s':>11}")
    for name, seconds in [("parse + normalise", parse_s), ("embed (per-iteration calls)", embed_s),
                          ("embed (100 groups per call)", embed_batched_s),
                          ("score_batch", batch_s),
                          ("score_group (one call per group)", per_iteration_s),
                          ("per-rollout loop reference", loop_s)]:
        print(f"{name:<34}{seconds:>9.3f}{rate(seconds)}")
    print(f"\nscore_batch vs loop: {loop_s / batch_s:.1f}x; score_group calls vs loop: "
          f"{loop_s / per_iteration_s:.1f}x (agreement: solver {solver_gap:.1e}, "
          f"loo {loo_gap:.1e})")
    floors = floor_seconds(groups, batch, config)
    print("\nfloor of score_batch on this machine (see floor_seconds):")
    for name, seconds in floors.items():
        print(f"  {name:<40}{seconds:>7.3f} s")
    print(f"  {'sum (no time left for any arithmetic)':<40}{sum(floors.values()):>7.3f} s = "
          f"{loop_s / sum(floors.values()):.1f}x the loop at best")
    print(f"whole run, parse + embed + score_batch: {parse_s + embed_s + batch_s:.2f} s")
    print(f"peak RSS: {rss_inputs:.0f} MB with inputs, {peak_rss_mb():.0f} MB at the end")


if __name__ == "__main__":
    main()
