"""Sampled scoring (pass@1, maj@k, agreement) and the `ireasoner_world` task's hooks."""

import pytest

from ireasoner.answers import dominant_answer
from ireasoner.eval.sampled import mean_scores, score_samples
from ireasoner.eval.tasks.ireasoner_world.utils import process_results


def trace(answer: str) -> str:
    return f"<think>\nStep 1: red shapes: 1\n</think><answer>{answer}</answer>"


def test_pass_at_1_is_the_mean_and_maj_at_5_the_majoritys_correctness():
    score = score_samples([trace("3"), trace("3"), trace("4"), trace("3"), "no tags"], "3")
    assert score.pass_at_1 == pytest.approx(0.6)
    assert score.majority_correct == 1.0
    assert score.agreement == pytest.approx(0.6)
    wrong = score_samples([trace("2"), trace("2"), trace("3"), trace("1"), trace("2")], "3")
    assert (wrong.pass_at_1, wrong.majority_correct) == (pytest.approx(0.2), 0.0)


def test_unparsable_responses_never_win_the_vote():
    assert dominant_answer([None, None, "2"]) == "2"
    assert dominant_answer([None, None]) is None
    score = score_samples(["x", "y"], "2")
    assert (score.pass_at_1, score.majority_correct, score.agreement) == (0.0, 0.0, 0.0)


def test_ties_go_to_the_answer_seen_first():
    assert dominant_answer(["4", "3", "3", "4"]) == "4"


def test_mean_scores_average_each_field():
    mean = mean_scores([score_samples([trace("1")], "1"), score_samples([trace("2")], "1")])
    assert (mean.pass_at_1, mean.majority_correct) == (0.5, 0.5)


def test_the_world_task_scores_the_k_responses_it_is_handed():
    doc = {"answer": "3"}
    five = [trace("3"), trace("3"), trace("1"), trace("2"), trace("5")]
    assert process_results(doc, [five]) == {"pass_at_1": 0.4, "maj_at_5": 1.0, "agreement": 0.4}
    assert process_results(doc, [trace("3")])["pass_at_1"] == 1.0  # one repeat alone
