import polars as pl

from ireasoner.eval.report import PAPER_TABLE1, compare_table


def _row(checkpoint, task, metric, value, status="ok"):
    return {"checkpoint": checkpoint, "task": task, "metric": metric, "value": value,
            "status": status}


def test_compare_table_shows_percent_gain_and_the_papers_numbers():
    results = pl.DataFrame([
        _row("base", "ai2d", "exact_match", 0.80),
        _row("iter-000010", "ai2d", "exact_match", 0.825),
        _row("iter-000010", "mathvision_test", "mathvision_standard_eval", 24.5),
        _row("base", "chartqa", "relaxed_overall", None, status="failed"),
    ])
    table = compare_table(results, "iter-000010").splitlines()
    assert len(table) == 2 + len(PAPER_TABLE1)
    ai2d = next(line for line in table if line.startswith("| AI2D "))
    assert ai2d == "| AI2D | 80.00 | 82.50 | +2.50 | 82.61 | 83.89 | +1.28 |"
    mathvision = next(line for line in table if line.startswith("| MathVision "))
    assert "| – | 24.50 | – |" in mathvision  # already in percent; no base score
    chartqa = next(line for line in table if line.startswith("| ChartQA "))
    assert chartqa.startswith("| ChartQA | – | – | – |")  # a failed row is not a score
