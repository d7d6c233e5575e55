"""One ablation table from several runs' evaluation results, shaped like the paper's Table 2:
a row per run (the base model first), a column per benchmark, and their average."""

from __future__ import annotations

import polars as pl

from ireasoner.eval.report import PAPER_TABLE1, Benchmark, score

BASE_ROW = "base model"


def benchmarks_for(results: pl.DataFrame) -> list[Benchmark]:
    """The paper's benchmarks that were evaluated, in Table 1's order, then any other task with
    the first metric it reported (its value as lmms-eval gives it)."""
    tasks = set(results["task"].to_list()) if results.height else set()
    known = [b for b in PAPER_TABLE1 if b.task in tasks]
    others = []
    for task in sorted(tasks - {b.task for b in known}):
        metrics = results.filter((pl.col("task") == task) & pl.col("metric").is_not_null())
        if metrics.height:
            others.append(Benchmark(task, task, metrics["metric"][0], True, float("nan"),
                                    float("nan")))
    return known + others


def ablation_table(runs: dict[str, tuple[pl.DataFrame, str]], base: pl.DataFrame | None
                   ) -> pl.DataFrame:
    """`runs` maps a row name to (its results, the checkpoint label to report); `base` holds
    the base model's results ("base" label). Scores in percent for the paper's benchmarks;
    None where a run has no ok result."""
    frames = [frame for frame, _ in runs.values()] + ([base] if base is not None else [])
    every = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    benches = benchmarks_for(every)
    rows = []
    named = ([(BASE_ROW, base, "base")] if base is not None else []) + [
        (name, frame, label) for name, (frame, label) in runs.items()]
    for name, frame, label in named:
        scores = {b.name: score(frame, label, b) for b in benches}
        present = [v for v in scores.values() if v is not None]
        rows.append({"run": name, "checkpoint": label, **scores,
                     "Avg": sum(present) / len(present) if len(present) == len(benches) and
                     present else None})
    schema = {"run": pl.String, "checkpoint": pl.String,
              **{b.name: pl.Float64 for b in benches}, "Avg": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def to_markdown(table: pl.DataFrame) -> str:
    columns = [c for c in table.columns if c != "checkpoint"]
    lines = ["| " + " | ".join(columns) + " |",
             "|---|" + "---:|" * (len(columns) - 1)]
    for row in table.iter_rows(named=True):
        cells = [row["run"]] + ["–" if row[c] is None else f"{row[c]:.2f}" for c in columns[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
