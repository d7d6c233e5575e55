"""lmms-eval hooks of the `ireasoner_world` task: one held-out world image per row, answered 5
times; scored by ireasoner.eval.sampled (pass@1, maj@5, agreement of the 5)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from ireasoner.eval.sampled import score_samples


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(doc["image"])).convert("RGB")]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    return doc["prompt"]


def process_results(doc: dict[str, Any], results: list) -> dict[str, float]:
    # The take_first_k filter hands over the k responses of the one request as a list; scoring
    # one response alone (lmms-eval's per-repeat pass) gets a string.
    responses = results[0] if isinstance(results[0], list) else list(results)
    score = score_samples(responses, doc["answer"])
    return {"pass_at_1": score.pass_at_1, "maj_at_5": score.majority_correct,
            "agreement": score.agreement}
