"""The ablation table: rows per run (base first), the paper's benchmarks in percent, the average
only where every benchmark has a score; and the sweep's plan refuses bad configs up front."""

from pathlib import Path

import polars as pl
import pytest

from flows.sweep import plan
from ireasoner.config import ConfigError
from ireasoner.eval.ablation import BASE_ROW, ablation_table, to_markdown

REPO = Path(__file__).resolve().parents[2]


def _results(label: str, **values: float) -> pl.DataFrame:
    metrics = {"chartqa": "relaxed_overall", "ai2d": "exact_match", "ireasoner_synth": "acc"}
    return pl.DataFrame([{"checkpoint": label, "task": task, "metric": metrics[task],
                          "value": value, "status": "ok"} for task, value in values.items()])


def test_rows_columns_and_average():
    base = _results("base", chartqa=0.80, ai2d=0.50)
    full = _results("iter-000010", chartqa=0.84, ai2d=0.52)
    partial = _results("iter-000010", chartqa=0.81)
    table = ablation_table({"full": (full, "iter-000010"), "no_step": (partial, "iter-000010")},
                           base)
    assert table["run"].to_list() == [BASE_ROW, "full", "no_step"]
    assert table.columns == ["run", "checkpoint", "AI2D", "ChartQA", "Avg"]  # Table 1's order
    assert table["ChartQA"].to_list() == pytest.approx([80.0, 84.0, 81.0])
    assert table["AI2D"][2] is None and table["Avg"][2] is None  # no average over a gap
    assert table["Avg"][1] == pytest.approx(68.0)
    markdown = to_markdown(table)
    assert "| no_step | – | 81.00 | – |" in markdown


def test_a_task_outside_the_paper_is_reported_as_lmms_eval_gives_it():
    table = ablation_table({"a": (_results("iter-000002", ireasoner_synth=0.25),
                                  "iter-000002")}, None)
    assert table["ireasoner_synth"].to_list() == [0.25]


def test_the_plan_validates_every_overlay_before_submitting(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("rewards:\n  lambda_mode: answer_only\n")
    bad.write_text("rewards:\n  lamda_max: 0.5\n")
    runs = plan([str(REPO / "configs/smoke.yaml")], [str(good)], str(tmp_path / "s"), [])
    assert runs[0].run_dir == f"{tmp_path}/s/good"
    assert "evaluation.every=8" in runs[0].overrides
    with pytest.raises(ConfigError, match="lamda_max"):
        plan([str(REPO / "configs/smoke.yaml")], [str(good), str(bad)], str(tmp_path / "s"), [])
    with pytest.raises(ConfigError, match="evaluation.every=3"):
        plan([str(REPO / "configs/smoke.yaml")], [str(good)], str(tmp_path / "s"),
             ["evaluation.every=3"])
