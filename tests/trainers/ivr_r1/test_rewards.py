"""IVR-R1 rewards (spec §6), hand-computed."""

import pytest

from ireasoner.answers import dominant_answer
from ireasoner.trainers.ivr_r1.rewards import (
    accuracy_reward,
    boxed_content,
    format_reward,
    score_output,
)

GOOD = "<desc>three bars</desc><think>the tallest is 7</think> \\boxed{7}"


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD, 1.0),
    ("  <desc>a</desc>\n<think>b</think>\nSo the answer is \\boxed{7}.", 1.0),
    ("<think>b</think><desc>a</desc>\\boxed{7}", 0.0),                 # wrong order
    ("<desc>a</desc><think>b</think>", 0.0),                          # no box
    ("<desc>a</desc><think>b</think>\\boxed{}", 0.0),                 # empty box
    ("<desc>a</desc><think>b</think>\\boxed{7", 0.0),                 # box cut off
    ("<desc> </desc><think>b</think>\\boxed{7}", 0.0),                # blank description
    ("<desc>a</desc><think>\\boxed{7}</think>", 0.0),                 # box inside think only
    ("Sure! <desc>a</desc><think>b</think>\\boxed{7}", 0.0),          # text before desc
    ("<desc>a</desc><think>b</think><think>c</think>\\boxed{7}", 0.0),  # tag twice
    ("<think>Step 1: 7</think><answer>7</answer>", 0.0),              # iReasoner format
])
def test_format_reward_requires_desc_then_think_then_a_box(text, expected):
    assert format_reward(text) == expected


def test_boxed_content_takes_the_last_closed_box_with_nested_braces():
    assert boxed_content("\\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert boxed_content("\\boxed{3} and a cut \\boxed{4") == "3"
    assert boxed_content("no box") is None


def test_total_reward_weighs_accuracy_and_format():
    right = score_output(GOOD, "7.0", format_weight=0.1)
    assert (right.r_acc, right.r_format, right.reward) == (1.0, 1.0, 1.0)
    wrong_format = score_output("the answer is \\boxed{7}", "7", format_weight=0.1)
    assert wrong_format.reward == pytest.approx(0.9)
    wrong_answer = score_output(GOOD, "8", format_weight=0.1)
    assert wrong_answer.reward == pytest.approx(0.1) and wrong_answer.answer == "7"


def test_a_missing_label_or_answer_scores_no_accuracy():
    assert score_output(GOOD, None, 0.1).r_acc == 0.0
    assert score_output("<desc>a</desc><think>b</think>", "7", 0.1).reward == 0.0


def test_format_weight_out_of_range_is_refused():
    with pytest.raises(ValueError, match="format_weight"):
        score_output(GOOD, "7", 1.5)


def test_dominant_answer_is_the_most_frequent_and_ties_go_to_the_first_drawn():
    assert dominant_answer(["3", None, "5", "5"]) == "5"
    assert dominant_answer(["5", "3", "3", "5"]) == "5"
    assert dominant_answer([None, None]) is None


# (answer as boxed, label, r_acc): math-verify decides pairs that look mathematical, the
# normaliser (spec §2) the rest and every pair math-verify cannot read.
ACCURACY = [
    ("1/2", "0.5", 1.0),
    ("0.5", "1/2", 1.0),
    ("\\frac{1}{2}", "0.5", 1.0),
    ("\\frac{1}{2}", "1/2", 1.0),
    ("\\dfrac{1}{2}", "0.5", 1.0),
    ("2/4", "1/2", 1.0),
    ("50\\%", "0.5", 1.0),
    ("3.0", "3", 1.0),
    ("3.00", "3", 1.0),
    ("1,000", "1000", 1.0),
    ("\\sqrt{4}", "2", 1.0),
    ("2^{3}", "8", 1.0),
    ("x=3", "3", 1.0),                      # an equation stands for its right side
    ("12 cm", "12", 1.0),
    ("\\pi", "3.14159265358979", 1.0),
    ("-0.25", "-\\frac{1}{4}", 1.0),
    ("1/3", "0.3333333", 1.0),              # rounded to math-verify's 6 decimals
    ("2", "3", 0.0),
    ("1/2", "0.25", 0.0),
    ("\\frac{1}{3}", "0.3", 0.0),
    ("12", "13", 0.0),
    ("x=3", "4", 0.0),
    # Words fall back to the normaliser (math-verify would read "red" as r·e·d).
    ("red", "red", 1.0),
    ("Red.", "red", 1.0),
    ("red", "der", 0.0),
    ("blue", "red", 0.0),
    ("(B) 12 cm", "b", 1.0),
    ("yes", "no", 0.0),
    ("the tallest bar", "The  tallest bar", 1.0),
    ("B", "C", 0.0),
    # Too long for math-verify without a timeout: the normaliser alone.
    ("1" * 201, "1" * 201, 1.0),
    ("0." + "5" * 200, "0." + "5" * 199, 0.0),
]


@pytest.mark.parametrize(("answer", "label", "expected"), ACCURACY)
def test_accuracy_judges_math_equivalence_and_falls_back_for_words(answer, label, expected):
    assert accuracy_reward(answer, label) == expected
    text = f"<desc>a</desc><think>b</think>\\boxed{{{answer}}}"
    assert score_output(text, label, format_weight=0.0).r_acc == expected


def test_accuracy_table_has_at_least_thirty_pairs():
    assert len(ACCURACY) >= 30
