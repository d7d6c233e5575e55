"""lmms-eval hooks of the `ireasoner_synth` task: one labelled synthetic image per row.

A row holds the PNG bytes, the full Solver prompt (fixed when the data file was built, so the
benchmark asks exactly what training asks) and the exact answer. Scoring is exact match after
`normalise_answer`, on the `<answer>` body when the response has one, else on the whole response
(a base model that answers plainly still gets credit); `answer_tagged` is the fraction of
responses with an `<answer>` tag, the format the Solver is trained to follow.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from ireasoner.answers import normalise_answer
from ireasoner.parsing import parse_trace

# Steps play no part in the score; the cap only bounds parsing work.
_MAX_STEPS = 16


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(doc["image"])).convert("RGB")]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    return doc["prompt"]


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    response = results[0]
    tagged = parse_trace(response, _MAX_STEPS).answer
    predicted = normalise_answer(tagged if tagged is not None else response)
    return {
        "exact_match": float(predicted is not None and predicted == normalise_answer(doc["answer"])),
        "answer_tagged": float(tagged is not None),
    }
