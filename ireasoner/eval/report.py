"""Base model vs checkpoint vs the paper's Table 1, as a markdown table (spec §5)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Benchmark:
    name: str  # as the paper prints it
    task: str  # lmms-eval task
    metric: str  # the metric column of results.parquet that the paper reports
    percent: bool  # lmms-eval already reports it in percent (else a fraction)
    paper_seed: float  # Qwen2.5-VL-7B, iReasoner Table 1
    paper_ireasoner: float  # iReasoner after 2.5k steps


# Table 1's order. MathVista and MathVerse are scored by lmms-eval with an LLM judge.
PAPER_TABLE1 = (
    Benchmark("InfoVQA", "infovqa_val", "anls", False, 80.44, 81.56),
    Benchmark("AI2D", "ai2d", "exact_match", False, 82.61, 83.89),
    Benchmark("ScienceQA", "scienceqa_img", "exact_match", False, 88.30, 89.92),
    Benchmark("MMMU", "mmmu_val", "mmmu_acc", False, 51.11, 52.37),
    Benchmark("ChartQA", "chartqa", "relaxed_overall", False, 84.00, 85.78),
    Benchmark("MathVista", "mathvista_testmini",
              "mathvista_testmini_format/llm_as_judge_eval", True, 68.47, 69.74),
    Benchmark("MathVision", "mathvision_test", "mathvision_standard_eval", True, 23.91, 25.29),
    Benchmark("MathVerse", "mathverse_testmini", "gpt_eval_score", False, 43.78, 45.91),
)


def compare_table(results: pl.DataFrame, checkpoint: str, base: str = "base",
                  benchmarks: tuple[Benchmark, ...] = PAPER_TABLE1) -> str:
    """Markdown: one row per benchmark with our base and checkpoint scores (percent), the gain,
    and the paper's seed-model and iReasoner numbers. A score we lack shows as "–"."""
    lines = [
        f"| Benchmark | {base} | {checkpoint} | Δ | paper seed | paper iReasoner | paper Δ |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for bench in benchmarks:
        ours_base = score(results, base, bench)
        ours = score(results, checkpoint, bench)
        gain = ours - ours_base if ours is not None and ours_base is not None else None
        paper_gain = bench.paper_ireasoner - bench.paper_seed
        lines.append(
            f"| {bench.name} | {_fmt(ours_base)} | {_fmt(ours)} | {_fmt(gain, signed=True)} | "
            f"{bench.paper_seed:.2f} | {bench.paper_ireasoner:.2f} | {paper_gain:+.2f} |"
        )
    return "\n".join(lines)


def score(results: pl.DataFrame, checkpoint: str, bench: Benchmark) -> float | None:
    """The checkpoint's score on `bench` in percent, or None when it was not evaluated (ok)."""
    match = results.filter(
        (pl.col("checkpoint") == checkpoint) & (pl.col("task") == bench.task)
        & (pl.col("metric") == bench.metric) & (pl.col("status") == "ok")
    )
    if match.is_empty():
        return None
    value = float(match["value"][-1])
    return value if bench.percent else 100.0 * value


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"
