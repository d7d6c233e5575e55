"""Content of the per-iteration Prefect artifacts."""

import pytest

from ireasoner.inspect.artifacts import iteration_markdown, iteration_table
from ireasoner.inspect.queries import NotInRun


def test_table_has_one_row_per_scored_rollout_with_its_rewards(run, question):
    rows = iteration_table(run, 1)
    assert [(r["image"], r["answer"], r["in_group"]) for r in rows] == [
        ("img-0", "3", True), ("img-0", "3", True), ("img-0", "4", False),
        ("img-1", None, False), ("img-1", None, False), ("img-1", None, False)]
    assert len(question) > 80
    assert rows[2] == dict(image="img-0", question=question[:79] + "…", answer="4", in_group=False,
                           r_ans=0.46, r_step=0.0, r_sol=0.2, advantage=-0.1,
                           finish_reason="stop")
    assert rows[3]["finish_reason"] == "length"


def test_table_keeps_at_most_max_rows(run):
    assert len(iteration_table(run, 2, max_rows=2)) == 2


def test_table_of_unscored_iteration_is_refused(run):
    with pytest.raises(NotInRun, match="iteration 4 has no rewards table"):
        iteration_table(run, 4)


def test_markdown_summarises_questions_parses_groups_rewards_update_and_times(run):
    text = iteration_markdown(run, 1)
    assert "### Iteration 1" in text
    assert "- Questions: 2 ok, 0 fallback, 0 skipped" in text
    assert "answer parsed 50% (3/6), steps parsed 83% (5/6)" in text
    assert "entropy 0.3182, |G|/N 0.3333, proposer reward 0.25, λ 0" in text
    assert "r_ans 0.3267, r_step 0.1667, r_sol 0.15" in text
    assert "- Solver update: loss 0.25, KL 0.01, β 0.001" in text
    assert "Proposer update" not in text                      # not updated this iteration
    assert "- Stage times: propose 1.5 s, solve 12.2 s, score 0.5 s" in text


def test_markdown_counts_skipped_questions(run):
    assert "- Questions: 1 ok, 0 fallback, 1 skipped" in iteration_markdown(run, 3)


def test_artifacts_of_an_iteration_with_every_question_skipped(run_ending_in_skips):
    assert iteration_table(run_ending_in_skips, 2) == []
    text = iteration_markdown(run_ending_in_skips, 2)
    assert "- Questions: 0 ok, 0 fallback, 2 skipped" in text
    assert "- Rollouts: 0; answer parsed n/a (0 rollouts)" in text
    assert "entropy n/a" in text
