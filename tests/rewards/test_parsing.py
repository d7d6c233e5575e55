import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ireasoner.parsing import SEVERITY, parse_question, parse_trace


def test_numbered_steps_inside_think_and_the_answer_are_extracted():
    text = "<think>\nStep 1: Read the axis.\nStep 2: The tallest bar is 12.\n</think>\n<answer>12</answer>"
    parse = parse_trace(text, max_steps=8)
    assert parse.status == "ok"
    assert parse.steps == ("Read the axis.", "The tallest bar is 12.")
    assert parse.answer == "12"
    assert parse.think.strip().startswith("Step 1")


def test_steps_written_on_one_line_are_split_at_each_step_label():
    parse = parse_trace("<think> Step 1: look. Step 2: count 3. </think><answer>3</answer>", 8)
    assert parse.steps == ("look.", "count 3.")


@pytest.mark.parametrize("marker", ["Step {k}:", "Step {k}.", "step {k} -", "{k}.", "{k})",
                                    "**Step {k}:**", "**Step {k}**:", "- Step {k}:", "### Step {k}"])
def test_every_documented_step_marker_opens_a_step(marker):
    body = "\n".join(f"{marker.format(k=k)} fact {k}" for k in (1, 2, 3))
    parse = parse_trace(f"<think>{body}</think><answer>x</answer>", 8)
    assert parse.steps == ("fact 1", "fact 2", "fact 3")


def test_lines_without_a_marker_continue_the_current_step_and_preamble_is_dropped():
    body = "Let me see.\n1. first part\nstill first\n\n2. second"
    parse = parse_trace(f"<think>{body}</think><answer>x</answer>", 8)
    assert parse.steps == ("first part\nstill first", "second")


def test_a_decimal_at_line_start_does_not_open_a_step():
    parse = parse_trace("<think>1. half is\n3.5 units\n2. done</think><answer>x</answer>", 8)
    assert parse.steps == ("half is\n3.5 units", "done")


def test_step_tags_win_over_numbered_lines_and_an_unclosed_step_runs_to_the_end():
    text = "<think><step>Step 1: a</step> noise <step> b </step><step>c</think><answer>x</answer>"
    assert parse_trace(text, 8).steps == ("Step 1: a", "b", "c")


def test_sentences_are_the_steps_when_nothing_is_numbered():
    text = "<think>The bar is red. It is 3.5 cm tall! So what?\nDone</think><answer>3.5</answer>"
    assert parse_trace(text, 8).steps == ("The bar is red.", "It is 3.5 cm tall!", "So what?",
                                         "Done")


def test_steps_are_capped_at_max_steps_and_the_total_is_kept():
    body = "\n".join(f"Step {k}: s{k}" for k in range(1, 11))
    parse = parse_trace(f"<think>{body}</think><answer>x</answer>", 4)
    assert parse.steps == ("s1", "s2", "s3", "s4")
    assert parse.steps_total == 10


def test_empty_steps_are_dropped():
    parse = parse_trace("<think>Step 1:\nStep 2: real\nStep 3: **</think><answer>1</answer>", 8)
    assert parse.steps == ("real",)
    parse = parse_trace("<think><step> </step><step>b</step></think><answer>1</answer>", 8)
    assert parse.steps == ("b",)


def test_the_last_complete_answer_wins():
    text = "<think>x</think><answer>5</answer> wait <answer> 6 </answer> <answer>7"
    assert parse_trace(text, 8).answer == "6"


def test_tags_are_matched_ignoring_case_and_inner_spaces():
    parse = parse_trace("< THINK >Step 1: a</ Think><Answer > B </ANSWER>", 8)
    assert (parse.steps, parse.answer, parse.status) == (("a",), "B", "ok")


def test_an_unclosed_answer_is_kept_and_flagged_truncated():
    parse = parse_trace("<think>1. a</think><answer> 42 and then", 8)
    assert (parse.answer, parse.status) == ("42 and then", "truncated")


@pytest.mark.parametrize(("text", "status"), [
    ("<think>1. a</think>", "no_answer"),
    ("<think>1. a</think><answer>  </answer>", "empty_answer"),
    ("<think> </think><answer>1</answer>", "no_steps"),
    ("Step 1: a\n<answer>1</answer>", "no_think"),
    ("", "no_answer"),
])
def test_each_missing_part_has_its_status(text, status):
    parse = parse_trace(text, 8)
    assert parse.status == status
    assert status in parse.issues


def test_every_issue_applies_at_once_in_severity_order():
    parse = parse_trace("", 8)
    assert parse.issues == ("no_answer", "no_steps", "no_think")
    assert set(parse.issues) <= set(SEVERITY)


def test_without_think_the_steps_come_from_the_text_before_the_answer():
    parse = parse_trace("Intro\nStep 1: a\nStep 2: b\n<answer>c</answer> trailing", 8)
    assert parse.think is None
    assert parse.steps == ("a", "b")


def test_words_before_answer_count_whitespace_words_without_tags():
    text = "<think>Step 1: one two\nStep 2: three</think> <answer>4 five</answer>"
    assert parse_trace(text, 8).words_before_answer == 7
    assert parse_trace("a b c", 8).words_before_answer == 3


def test_unicode_text_is_parsed():
    parse = parse_trace("<think>Schritt\nStep 1: Größe → 3½ m²\n</think><answer>３</answer>", 8)
    assert parse.steps == ("Größe → 3½ m²",)
    assert parse.answer == "３"


def test_max_steps_below_one_is_refused():
    with pytest.raises(ValueError, match="max_steps"):
        parse_trace("x", 0)


TAG_PIECES = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "<step>",
                              "</step>", "< Answer >", "Step 1:", "**Step 2**:", "3.", "4)",
                              "\n", " ", ".", "<", ">", "/", "*", "\\boxed{", "}", "é", "😀"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(TAG_PIECES, st.text(max_size=20)), max_size=40),
       st.integers(min_value=1, max_value=12))
def test_parse_trace_never_raises_and_respects_its_invariants(pieces, max_steps):
    parse = parse_trace("".join(pieces), max_steps)
    assert len(parse.steps) == min(parse.steps_total, max_steps)
    assert all(step and step == step.strip() for step in parse.steps)
    assert parse.status in (*SEVERITY, "ok")
    assert parse.answer is None or parse.answer == parse.answer.strip() != ""
    assert parse.words_before_answer >= 0


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_question_never_raises_on_arbitrary_text(text):
    parse = parse_question(text)
    assert parse.status in ("ok", "no_question", "empty_question", "truncated")
    assert (parse.question is None) == (parse.status in ("no_question", "empty_question"))


ADVERSARIAL = [
    "<" + " " * 100_000, "<answer>" * 12_500, "Step 1" * 16_000, "1.\n" * 33_000,
    "*" * 100_000, "<think>" + "a. " * 33_000, " " * 100_000 + "Step 2:", "<step>" * 16_000,
    ("Step 1: x " + " " * 50) * 1_600, "<answer" + " " * 100_000 + ">",
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_parse_trace_handles_100k_character_adversarial_inputs(text):
    assert len(text) >= 80_000
    parse = parse_trace(text, 8)
    assert len(parse.steps) <= 8


def test_question_is_the_last_complete_one_stripped():
    assert parse_question("<question> a? </question><question>b?</question><question>c")\
        .question == "b?"


@pytest.mark.parametrize(("text", "question", "status"), [
    ("I ask: <question>What is shown?</question>", "What is shown?", "ok"),
    ("no tags at all", None, "no_question"),
    ("<question>   </question>", None, "empty_question"),
    ("<QUESTION>How many", "How many", "truncated"),
])
def test_parse_question_statuses(text, question, status):
    parse = parse_question(text)
    assert (parse.question, parse.status) == (question, status)


@pytest.mark.parametrize(("text", "question", "rationale", "status"), [
    ("<question>Which bar is tallest?</question>\n<rationale>Needs comparing heights."
     "</rationale>", "Which bar is tallest?", "Needs comparing heights.", "ok"),
    ("<question>Which bar is tallest?</question>", "Which bar is tallest?", None, "ok"),
    ("<question>Which bar?</question><rationale>  </rationale>", "Which bar?", None, "ok"),
    # An unclosed question ends where the rationale begins: never a question with its reason.
    ("<question>Which bar is tallest?<rationale>Compare them.</rationale>",
     "Which bar is tallest?", "Compare them.", "truncated"),
    ("<rationale>Only a reason.</rationale>", None, "Only a reason.", "no_question"),
])
def test_the_rationale_is_parsed_apart_from_the_question(text, question, rationale, status):
    parse = parse_question(text)
    assert (parse.question, parse.rationale, parse.status) == (question, rationale, status)
