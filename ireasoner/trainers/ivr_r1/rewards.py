"""IVR-R1 rewards (spec §6): r = (1 − w_f)·r_acc + w_f·r_format, and the pseudo-label.

r_format = 1 when the output is `<desc>…</desc>` then `<think>…</think>` then a complete
`\\boxed{…}`, each tag exactly once, contents not blank, nothing before `<desc>`.
r_acc = 1 when the last complete `\\boxed{…}` normalises (spec §2) to the normalised label.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ireasoner.answers import normalise_answer

_LAYOUT = re.compile(r"\s*<desc>(?P<desc>.*?)</desc>\s*<think>(?P<think>.*?)</think>(?P<tail>.*)",
                     re.DOTALL)
_TAGS = ("<desc>", "</desc>", "<think>", "</think>")
BOXED = "\\boxed{"


@dataclass(frozen=True)
class IVRScore:
    answer_raw: str | None  # the last complete \boxed{} content
    answer: str | None  # normalised; None when unparsable
    r_format: float
    r_acc: float
    reward: float


def boxed_content(text: str) -> str | None:
    """The content of the last `\\boxed{…}` whose braces close, or None."""
    start = text.rfind(BOXED)
    while start >= 0:
        depth, index = 1, start + len(BOXED)
        while index < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            index += 1
        if depth == 0:
            return text[start + len(BOXED): index - 1]
        start = text.rfind(BOXED, 0, start)  # an unclosed box (cut output): try an earlier one
    return None


def format_reward(text: str) -> float:
    if any(text.count(tag) != 1 for tag in _TAGS):
        return 0.0
    match = _LAYOUT.fullmatch(text)
    if match is None or not match["desc"].strip() or not match["think"].strip():
        return 0.0
    answer = boxed_content(match["tail"])
    return 1.0 if answer is not None and answer.strip() else 0.0


def accuracy_reward(answer: str | None, label: str | None) -> float:
    """1 when both normalised answers exist and agree; a missing label scores 0."""
    return float(answer is not None and label is not None and answer == normalise_answer(label))


def score_output(text: str, label: str | None, format_weight: float) -> IVRScore:
    if not 0 <= format_weight <= 1:
        raise ValueError(f"format_weight must lie in [0, 1], got {format_weight}")
    raw = boxed_content(text)
    answer = normalise_answer(raw)
    r_format, r_acc = format_reward(text), accuracy_reward(answer, label)
    return IVRScore(answer_raw=raw, answer=answer, r_format=r_format, r_acc=r_acc,
                    reward=(1 - format_weight) * r_acc + format_weight * r_format)


def dominant_answer(answers: list[str | None]) -> str | None:
    """The most frequent non-null answer; a tie goes to the one drawn first (spec §2's rule)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == top)
