"""The diagnostics report: four figures and a page that links them, on any run size."""

import re

import numpy as np
import pytest

from ireasoner.config import Config
from ireasoner.inspect.figures import moving_average
from ireasoner.inspect.queries import NotInRun
from ireasoner.inspect.report import FIGURES, depth_profile, write_report
from ireasoner.pipeline.run import open_run
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_report(page):
    html = page.read_text(encoding="utf-8")
    for name in FIGURES:
        assert (page.parent / name).read_bytes().startswith(PNG_MAGIC)
        assert f'src="{name}"' in html
    return html


def test_report_writes_four_figures_and_a_page_with_the_manifest(run, tmp_path):
    html = _check_report(write_report(run, tmp_path / "report"))
    assert run.manifest()["config_fingerprint"] in html
    assert run.manifest()["code_version"] in html
    assert re.search(r"iterations scored / completed / planned</td><td>3 / 0 / 2500", html)


@pytest.mark.slow
def test_report_survives_a_one_iteration_run(one_iteration_run, tmp_path):
    _check_report(write_report(one_iteration_run, tmp_path / "report"))


def test_depth_profile_defaults_to_latest_iteration_and_largest_group(run):
    profile = depth_profile(run)
    assert profile.title == "iteration 3, image 0 (img-0)"
    assert profile.rollouts == [0, 1]
    np.testing.assert_allclose(profile.loo_similarity, [[0.8] + [np.nan] * 7] * 2)
    np.testing.assert_allclose(profile.disagreement, [0.2] + [np.nan] * 7)


def test_depth_profile_passes_over_an_iteration_with_every_question_skipped(
        run_ending_in_skips):
    assert depth_profile(run_ending_in_skips).title == "iteration 1, image 0 (img-0)"
    with pytest.raises(NotInRun, match="no scored question in iteration 2"):
        depth_profile(run_ending_in_skips, iteration=2)


@pytest.mark.slow
def test_report_survives_an_iteration_with_every_question_skipped(run_ending_in_skips, tmp_path):
    _check_report(write_report(run_ending_in_skips, tmp_path / "report"))


def test_depth_profile_of_an_all_invalid_question_is_empty_not_an_error(run):
    profile = depth_profile(run, iteration=1, image_index=1)
    assert profile.rollouts == []
    assert profile.loo_similarity.shape == (0, 8)
    assert np.isnan(profile.disagreement).all()


def test_depth_profile_of_a_missing_question_is_refused(run):
    with pytest.raises(NotInRun, match="image index 5 in iteration 2"):
        depth_profile(run, iteration=2, image_index=5)


@pytest.mark.slow
def test_report_of_a_run_with_nothing_scored_still_writes_every_file(tmp_path):
    store = RunStore(tmp_path / "fresh")
    open_run(store, Config(), trainer_spec, resume=False)
    assert depth_profile(store) is None
    _check_report(write_report(store, tmp_path / "report"))


def test_moving_average_skips_missing_values():
    values = np.array([1.0, np.nan, 3.0, 5.0, np.nan, np.nan, np.nan])
    np.testing.assert_allclose(moving_average(values, 2),
                               [1.0, 1.0, 3.0, 4.0, 5.0, np.nan, np.nan])
