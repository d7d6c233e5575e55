"""lmms-eval hooks of the rule-scored MathVista and MathVerse tasks.

The prompts are lmms-eval's own, rebuilt here because its modules cannot be imported without an
API key (they build OpenAI clients when imported; the client refuses a missing key) and, for
MathVista, without lmms-eval's optional `Levenshtein`: MathVista's is the text of lmms-eval
0.7.3's `create_one_query` with `shot_type="format-prompt"`, zero shots, no caption or OCR;
MathVerse's is the document's `query_wo`, as its format prompt is. Tests compare both with
lmms-eval's functions.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from ireasoner.eval.tasks.math_rules.answers import score_mathverse, score_mathvista

_FORMAT_HINTS = {
    "integer": "Answer the question using a single integer number.",
    "list": "Answer the question using a Python list.",
}
_DECIMALS = {1: "one decimal place", 2: "two decimal places"}


def mathvista_doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    return [doc["decoded_image"].convert("RGB")]


def mathvista_doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    question = doc["question"] + (f" (Unit: {doc['unit']})" if doc.get("unit") else "")
    choices = "\n".join(f"{chr(ord('A') + i)}. {choice}"
                        for i, choice in enumerate(doc.get("choices") or []))
    return "\n".join(part for part in (question, choices, _format_hint(doc)) if part).strip()


def mathverse_doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    return [] if str(doc["image"]).strip() == "" else [doc["image"].convert("RGB")]


def mathverse_doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    return doc["query_wo"].strip()


def mathvista_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    score = score_mathvista(results[0], doc["question_type"], doc["answer_type"],
                            doc.get("choices"), doc.get("precision"), doc["answer"])
    return {"rule_accuracy": float(score.correct),
            "answer_read": float(score.prediction is not None)}


def mathverse_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    return {"rule_accuracy": float(score_mathverse(results[0], str(doc["answer"]),
                                                   doc["question_type"]))}


def _format_hint(doc: dict[str, Any]) -> str:
    if doc["question_type"] == "multi_choice":
        return "Answer with the option's letter from the given choices directly."
    if doc["answer_type"] == "float":
        places = int(doc.get("precision") or 0)
        return ("Answer the question using a single floating-point number with "
                f"{_DECIMALS.get(places, f'{places} decimal places')}.")
    return _FORMAT_HINTS.get(doc["answer_type"], "")
