"""The console's per-iteration figures and the progress lines of long commands."""

from __future__ import annotations

import logging
import math

from ireasoner.progress import IterationProgress, figures, steps, summary_line


def test_summary_line_reads_figures_by_name_and_leaves_out_what_a_row_lacks():
    row = {"r_sol": 0.4123, "group_fraction": 2 / 3, "r_step": 0.0, "solver_kl": 3.96e-09,
           "solver_beta": 9.05e-4, "seconds_total": 12.0, "new_column": 1.0}
    assert summary_line(3, 8, row, 12.25) == (
        "iteration 3/8  r_sol 0.412  |G|/N 0.667  r_step 0.000  KL 3.96e-09  β 9.05e-04  "
        "12.2 s/it  1:01 left")
    # IVR-R1's row: no r_sol, |G|/N or r_step; nulls and NaN are left out.
    ivr = {"ivr_reward": 0.75, "r_acc": 0.5, "solver_kl": None, "solver_beta": math.nan}
    assert figures(ivr) == "reward 0.750  acc 0.500"
    assert summary_line(1, 2, None, None) == "iteration 1/2"
    assert summary_line(1, 2000, {}, 3700.0).endswith("3700.0 s/it  2054:31:40 left")


def test_lines_when_not_a_terminal_and_silence_when_quiet(caplog):
    logger = logging.getLogger("ireasoner.progress")
    with caplog.at_level(logging.INFO, logger="ireasoner.progress"):
        shown = IterationProgress(1, 2, bar=False)
        shown.advance(1, {"r_sol": 0.5})
        assert list(steps(range(100), 100, "rescore", lines=4)) == list(range(100))
    lines = [r.getMessage() for r in caplog.records if r.name == "ireasoner.progress"]
    assert lines[0].startswith("iteration 1/2  r_sol 0.500  ") and lines[0].endswith(" left")
    assert [line.split(" (")[0] for line in lines[1:]] == [
        "rescore: 25/100", "rescore: 50/100", "rescore: 75/100", "rescore: 100/100"]

    # On a terminal the bar shows the figures: the line goes to the run's logs, not the console.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ireasoner.progress"):
        shown = IterationProgress(1, 2, bar=True)
        shown.advance(1, {"r_sol": 0.5})
        shown.close()
    [record] = [r for r in caplog.records if r.name == "ireasoner.progress"]
    assert record.getMessage().startswith("iteration 1/2") and record.console is False

    caplog.clear()
    logger.setLevel(logging.WARNING)  # ireasoner -q
    try:
        IterationProgress(1, 2, bar=False).advance(1, {"r_sol": 0.5})
        assert list(steps([1, 2], 2, "export")) == [1, 2]
    finally:
        logger.setLevel(logging.NOTSET)
    assert [r for r in caplog.records if r.name == "ireasoner.progress"] == []
