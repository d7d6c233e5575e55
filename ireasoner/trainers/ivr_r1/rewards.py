"""IVR-R1 rewards (spec §6): r = (1 − w_f)·r_acc + w_f·r_format, and the pseudo-label.

r_format = 1 when the output is `<desc>…</desc>` then `<think>…</think>` then a complete
`\\boxed{…}`, each tag exactly once, contents not blank, nothing before `<desc>`.
r_acc = 1 when the last complete `\\boxed{…}` normalises (spec §2) to the normalised label, or
when math-verify (a maintained math-answer library) finds the two mathematically equivalent:
"1/2", "0.5" and "\\frac{1}{2}" all match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from math_verify import parse as parse_math
from math_verify import verify as verify_math

from ireasoner.answers import normalise_answer

_LAYOUT = re.compile(r"\s*<desc>(?P<desc>.*?)</desc>\s*<think>(?P<think>.*?)</think>(?P<tail>.*)",
                     re.DOTALL)
_TAGS = ("<desc>", "</desc>", "<think>", "</think>")
BOXED = "\\boxed{"
# math-verify judges only answers that look mathematical (a digit or a LaTeX command: it reads
# "red" as the product r·e·d) and short ones: with its signal-based timeouts off (Prefect runs
# tasks off the main thread, where signals cannot be set) the length bounds its work.
_MATH_HINT = re.compile(r"[0-9\\]")
MATH_MAX_CHARS = 200


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
    """1 when the answer (a raw \\boxed{} content) and the label agree: equal once normalised
    (spec §2), or mathematically equivalent by math-verify; a missing one scores 0."""
    if answer is None or label is None:
        return 0.0
    normalised = normalise_answer(answer)
    if normalised is not None and normalised == normalise_answer(label):
        return 1.0
    return float(math_equivalent(answer, label))


def math_equivalent(answer: str, label: str) -> bool:
    """math-verify's judgement of two short mathematical answers; False for any other pair
    (left to the normaliser) and whenever math-verify cannot read one of them."""
    if not all(_MATH_HINT.search(text) and len(text) <= MATH_MAX_CHARS
               for text in (answer, label)):
        return False
    gold = parse_math(f"{BOXED}{label}}}", parsing_timeout=None)
    target = parse_math(f"{BOXED}{answer}}}", parsing_timeout=None)
    if not gold or not target:
        return False
    return bool(verify_math(gold, target, timeout_seconds=None))


def score_output(text: str, label: str | None, format_weight: float) -> IVRScore:
    if not 0 <= format_weight <= 1:
        raise ValueError(f"format_weight must lie in [0, 1], got {format_weight}")
    raw = boxed_content(text)
    answer = normalise_answer(raw)
    r_format, r_acc = format_reward(text), accuracy_reward(raw, label)
    return IVRScore(answer_raw=raw, answer=answer, r_format=r_format, r_acc=r_acc,
                    reward=(1 - format_weight) * r_acc + format_weight * r_format)


