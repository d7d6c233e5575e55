"""Traces, report and Prefect artifacts of a compacted run: the same as before compaction.

`compacted_run` is `run` with iterations 1 and 2 merged into chunk files and 3 left as it was."""

import numpy as np
import pytest

from ireasoner.inspect.artifacts import iteration_markdown, iteration_table
from ireasoner.inspect.queries import NotInRun, image_steps, iteration_summary
from ireasoner.inspect.report import FIGURES, depth_profile, write_report
from ireasoner.inspect.traces import format_traces


@pytest.mark.parametrize("kwargs", [{}, {"iteration": 1}, {"image_id": "img-1"},
                                    {"iteration": 2, "image_id": "img-0", "limit": 1}])
def test_traces_of_a_compacted_run_are_unchanged(run, compacted_run, kwargs):
    assert format_traces(compacted_run, **kwargs) == format_traces(run, **kwargs)


def test_missing_iteration_of_a_compacted_run_names_the_span(compacted_run):
    with pytest.raises(NotInRun, match=r"iteration 4 has no questions table .*: 1\.\.3\)"):
        format_traces(compacted_run, iteration=4)


def test_report_of_a_compacted_run_plots_the_same_data(run, compacted_run, tmp_path):
    assert iteration_summary(compacted_run).equals(iteration_summary(run))
    assert image_steps(compacted_run, "img-0").equals(image_steps(run, "img-0"))
    for iteration in (None, 1):
        old, new = depth_profile(run, iteration), depth_profile(compacted_run, iteration)
        assert (new.title, new.rollouts) == (old.title, old.rollouts)
        np.testing.assert_array_equal(new.loo_similarity, old.loo_similarity)
        np.testing.assert_array_equal(new.disagreement, old.disagreement)
    page = write_report(compacted_run, tmp_path / "report")
    assert all((page.parent / name).is_file() for name in FIGURES)


@pytest.mark.parametrize("iteration", [1, 3])
def test_prefect_artifacts_of_a_compacted_run_are_unchanged(run, compacted_run, iteration):
    assert iteration_table(compacted_run, iteration) == iteration_table(run, iteration)
    assert iteration_markdown(compacted_run, iteration) == iteration_markdown(run, iteration)
