"""Terminal traces: what is shown, how it is selected, and the messages when nothing matches."""

import re

import pytest

from ireasoner.config import Config
from ireasoner.inspect.queries import NotInRun
from ireasoner.inspect.traces import format_traces
from ireasoner.pipeline.run import open_run
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore


def _headers(text: str) -> list[str]:
    return re.findall(r"=== (iteration \d+ \| image \d+ \| [\w-]+)", text)


def test_default_shows_the_latest_scored_iteration(run):
    assert _headers(format_traces(run)) == ["iteration 3 | image 0 | img-0",
                                            "iteration 3 | image 1 | img-1"]


def test_shows_question_group_every_answer_and_steps_with_similarity(run, question):
    text = format_traces(run, iteration=1, image_id="img-0", width=200)
    assert f"Question [ok]: {question}" in text
    assert "Dominant answer: 3 | entropy 0.636 | density 0.750" in text
    answers = re.findall(r"Rollout (\d) \[(in group|outside)\] answer: (\S+)", text)
    assert answers == [("0", "in group", "3"), ("1", "in group", "3"), ("2", "outside", "4")]
    assert "r_ans 0.750 | r_step 0.500 | r_sol 0.100 | advantage -0.100 | finish: stop" in text
    assert "1. sim 0.800 loo 0.800 | Étape 1 du raisonnement: on compte les côtés → 1 " \
           "(rollout 0)" in text
    assert "2. sim 0.700 loo n/a | Étape 2" in text      # null leave-one-out similarity
    assert "1. sim n/a loo n/a | Étape 1" in text         # off-group rollout


def test_all_invalid_group_and_skipped_question_are_readable(run):
    invalid = format_traces(run, iteration=1, image_id="img-1")
    assert "Dominant answer: (none)" in invalid
    assert len(re.findall(r"\[outside\] answer: \(none\)", invalid)) == 3
    assert "(no steps parsed; parse status: no_answer)" in invalid
    skipped = format_traces(run, iteration=3, image_id="img-1")
    assert "Question [skipped:no_question]: (none)" in skipped
    assert "Proposer output: <q>??" in skipped
    assert "(no scored rollouts)" in skipped


def test_image_alone_selects_every_iteration_that_asked_about_it(run):
    assert _headers(format_traces(run, image_id="img-1")) == [
        "iteration 1 | image 1 | img-1", "iteration 2 | image 1 | img-1",
        "iteration 3 | image 1 | img-1"]


def test_limit_caps_the_number_of_questions(run):
    assert len(_headers(format_traces(run, image_id="img-0", limit=2))) == 2


def test_lines_are_wrapped_to_width(run):
    text = format_traces(run, iteration=2, width=60)
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "côtés → 1 (rollout 0)" in text.replace("\n          ", " ")


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(iteration=9), r"iteration 9 has no questions table .*iterations with one: 1\.\.3"),
    (dict(image_id="img-7"), r"image 'img-7' does not appear"),
    (dict(iteration=2, image_id="img-7"), r"image 'img-7' is not in iteration 2"),
])
def test_missing_iteration_or_image_gives_a_clear_message(run, kwargs, message):
    with pytest.raises(NotInRun, match=message):
        format_traces(run, **kwargs)


def test_missing_run_gives_a_clear_message(tmp_path):
    with pytest.raises(NotInRun, match="is not a run directory"):
        format_traces(RunStore(tmp_path / "nowhere"))


def test_run_with_nothing_scored_says_so(tmp_path):
    store = RunStore(tmp_path / "fresh")
    open_run(store, Config(), trainer_spec, resume=False)
    with pytest.raises(NotInRun, match="no rewards table yet"):
        format_traces(store)


def test_iteration_with_every_question_skipped_shows_the_skips(run_ending_in_skips):
    text = format_traces(run_ending_in_skips)
    assert _headers(text) == ["iteration 2 | image 0 | img-0", "iteration 2 | image 1 | img-1"]
    assert text.count("(no scored rollouts)") == 2
