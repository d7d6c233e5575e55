"""Rule-based MathVista / MathVerse scoring on responses written the ways models answer, against
documents in the benchmarks' own formats (field names and values of AI4Math/MathVista testmini
and CaraJ/MathVerse-lmmseval testmini; no dataset is downloaded)."""

from __future__ import annotations

import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ImageFile

from ireasoner.eval.tasks.math_rules import utils as hooks
from ireasoner.eval.tasks.math_rules.answers import equivalent, final_answer_span, score_mathverse


def mathvista_doc(**fields) -> dict:
    doc = {"pid": "1", "question": "What fraction of the shape is blue?", "unit": None,
           "choices": None, "precision": None, "question_type": "free_form",
           "answer_type": "integer", "answer": "14", "metadata": {"split": "testmini"}}
    return {**doc, **fields}


MC = mathvista_doc(question_type="multi_choice", answer_type="text",
                   choices=["3/11", "8/11", "6/11", "3/5"], answer="8/11")
INTEGER = mathvista_doc(question="Which number is missing?", answer="14")
TWO_PLACES = mathvista_doc(question="How much money does Luca need?", unit="$",
                           answer_type="float", precision=2.0, answer="1.45")
ONE_PLACE = mathvista_doc(answer_type="float", precision=1.0, answer="0.6")
LIST = mathvista_doc(question="Between which two years does the line graph peak?",
                     answer_type="list", answer="[2007, 2008]")

MATHVISTA_CASES = [  # response, document, correct
    ("B", MC, True),
    ("(B) 8/11", MC, True),
    ("The correct answer is (B) 8/11.", MC, True),
    ("<think>\nStep 1: 8 of 11 parts are blue.\n</think>\n<answer>B</answer>", MC, True),
    ("8/11", MC, True),
    ("\\boxed{B}", MC, True),
    ("Answer: b", MC, True),
    ("C", MC, False),
    ("I cannot tell from the image.", MC, False),  # MathVista would map it to the nearest option
    ("A triangle has three sides.", MC, False),  # a sentence is no option label
    ("14", INTEGER, True),
    ("The answer is 14.", INTEGER, True),
    ("There are 7 red and 7 blue squares, so 14", INTEGER, True),
    ("14.0", INTEGER, True),
    ("\\boxed{14}", INTEGER, True),
    ("13", INTEGER, False),
    ("", INTEGER, False),
    ("1,000", mathvista_doc(answer="1000"), True),
    ("The answer is -3.", mathvista_doc(answer="-3"), True),
    ("$1.45", TWO_PLACES, True),
    ("1.450", TWO_PLACES, True),
    ("The total is 1.4", TWO_PLACES, False),
    ("0.6", ONE_PLACE, True),
    ("3/5", ONE_PLACE, True),
    ("\\frac{3}{5}", ONE_PLACE, True),
    ("60%", ONE_PLACE, False),
    ("[2007, 2008]", LIST, True),
    ("The peak was between [2007, 2008].", LIST, True),
    ("2007 and 2008", LIST, False),  # no list written: the rules read none
]


@pytest.mark.parametrize("response,doc,correct", MATHVISTA_CASES)
def test_mathvista_rule_scoring(response, doc, correct):
    scores = hooks.mathvista_process_results(doc, [response])
    assert scores["rule_accuracy"] == float(correct)


def test_mathvista_reports_whether_an_answer_was_read():
    assert hooks.mathvista_process_results(MC, ["(C)"])["answer_read"] == 1.0
    assert hooks.mathvista_process_results(MC, ["no idea"])["answer_read"] == 0.0


def mathverse_doc(answer: str, question_type: str = "free-form") -> dict:
    return {"sample_index": "1", "problem_index": "1", "problem_version": "Text Lite",
            "question": "As shown in the figure, find the area.", "answer": answer,
            "question_type": question_type, "query_wo": "...", "query_cot": "...",
            "question_for_eval": "find the area", "metadata": {"split": "testmini"}}


MATHVERSE_CASES = [  # response, gold answer, question type, correct
    ("B", "B", "multi-choice", True),
    ("(B)", "B", "multi-choice", True),
    ("Answer: B. 60°", "B", "multi-choice", True),
    ("The answer is C", "B", "multi-choice", False),
    ("\\frac{9}{2}", "4.5", "free-form", True),
    ("2\\sqrt{3}", "\\sqrt{12}", "free-form", True),
    ("60°", "60", "free-form", True),
    ("y = 4 - x^2", "y=-x^2+4", "free-form", True),
    ("x = 5", "5", "free-form", True),
    ("\\frac{\\pi}{3}", "1.047", "free-form", True),
    ("12 cm", "12", "free-form", True),
    ("(2, 3)", "(2,3)", "free-form", True),
    ("Increasing", "increasing", "free-form", True),
    ("The area is $24\\sqrt{2}$ square units.", "24\\sqrt{2}", "free-form", True),
    ("<answer>\\frac{1}{2}</answer>", "0.5", "free-form", True),
    ("7", "8", "free-form", False),
    ("2x+1", "2x-1", "free-form", False),
    ("(2, 4)", "(2,3)", "free-form", False),
    ("decreasing", "increasing", "free-form", False),
    ("", "5", "free-form", False),
]


@pytest.mark.parametrize("response,answer,question_type,correct", MATHVERSE_CASES)
def test_mathverse_rule_scoring(response, answer, question_type, correct):
    scores = hooks.mathverse_process_results(mathverse_doc(answer, question_type), [response])
    assert scores["rule_accuracy"] == float(correct)


def test_the_final_answer_span_prefers_the_answer_tag_then_boxed_then_the_phrase():
    assert final_answer_span("x <answer>4</answer> \\boxed{5}") == "4"
    assert final_answer_span("so \\boxed{\\frac{1}{2}} and") == "\\frac{1}{2}"
    assert final_answer_span("Step 1: 3\nThe answer is 7.\nDone") == "7"
    assert final_answer_span("first line\n\nlast line\n") == "last line"


def test_words_are_never_compared_as_products_of_symbols():
    assert not equivalent("abc", "cab")  # latex2sympy2 would read both as a*b*c
    assert not score_mathverse("yes", "sey", "free-form")


@pytest.fixture(scope="module")
def lmms_prompts():
    """lmms-eval's own MathVista evaluator and MathVerse prompt hook. Their modules build OpenAI
    clients when imported (a dummy key is set for that; no call is made) and MathVista's imports
    Levenshtein (an lmms-eval extra, absent here) for a fallback prompts do not use. Importing
    lmms-eval's tasks sets PIL's global LOAD_TRUNCATED_IMAGES; it is restored afterwards, or
    the image-sanitising tests that follow would accept truncated files."""
    pytest.importorskip("lmms_eval")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", ImageFile.LOAD_TRUNCATED_IMAGES)
        patch.setenv("OPENAI_API_KEY", "prompts-make-no-call")
        stub = types.ModuleType("Levenshtein")
        stub.distance = lambda a, b: 0
        patch.setitem(sys.modules, "Levenshtein", sys.modules.get("Levenshtein", stub))
        from lmms_eval.tasks.mathverse.utils import mathverse_doc_to_text
        from lmms_eval.tasks.mathvista.mathvista_evals import MathVistaEvaluator

        yield MathVistaEvaluator(), mathverse_doc_to_text


@pytest.mark.parametrize("doc", [MC, INTEGER, TWO_PLACES, ONE_PLACE, LIST])
def test_mathvista_prompt_is_lmms_evals_format_prompt(lmms_prompts, doc):
    problem = {key: doc.get(key) for key in ("question", "choices", "precision",
                                            "question_type", "answer_type")}
    problem.update(unit=doc["unit"] or "", caption="", ocr="")
    expected = lmms_prompts[0].create_one_query(problem, shot_type="format-prompt", shot_num=0)
    assert hooks.mathvista_doc_to_text(doc) == expected


def test_mathverse_prompt_is_lmms_evals_format_prompt(lmms_prompts):
    doc = mathverse_doc("5") | {"query_wo": "Find the area of the triangle.\nChoices: A:5 B:6\n"}
    kwargs = {"shot_type": "format-prompt", "query_type": "query_wo"}  # mathverse_testmini's
    assert hooks.mathverse_doc_to_text(doc) == lmms_prompts[1](doc, kwargs)


_PIECES = [*"0123456789abxy+-*/^=<>(),.$ {}\\%°", "\\frac", "\\sqrt", "\\pi", "\\boxed{",
           "<answer>", "</answer>", "Answer: ", " is ", "\n", "B", "(C)"]
_LATEXISH = st.lists(st.sampled_from(_PIECES), max_size=25).map("".join)


@settings(max_examples=300, deadline=None)
@given(response=_LATEXISH, gold=_LATEXISH)
def test_scoring_any_text_never_raises(response, gold):
    # A random model writes anything; one exception would fail the whole lmms-eval task.
    assert score_mathverse(response, gold or "1", "free-form") in (True, False)
    for doc in (MC, INTEGER, TWO_PLACES, LIST):
        hooks.mathvista_process_results(doc, [response])
