"""Sampled evaluation: k responses per question at temperature 1, scored as pass@1 (the mean
correctness of the k samples: the expected accuracy of one sample) and maj@k (whether the most
frequent answer among the k is right). maj@k above pass@1 is the gap that label-free consensus
training can turn into pass@1.

The scoring is pure; both the `ireasoner_world` lmms-eval task and the world model's
validation during its warm-up use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ireasoner.answers import dominant_answer, normalise_answer
from ireasoner.parsing import parse_trace

_MAX_STEPS = 16  # steps play no part in the score; the cap only bounds parsing work


def response_answer(response: str) -> str | None:
    """The normalised `<answer>` body of a response, or None without one."""
    tagged = parse_trace(response, _MAX_STEPS).answer
    return normalise_answer(tagged) if tagged is not None else None


@dataclass(frozen=True)
class SampledScore:
    pass_at_1: float  # mean over the k samples
    majority_correct: float  # 1.0 when the majority answer is right
    agreement: float  # share of the k samples that gave the majority answer


def score_samples(responses: Sequence[str], target: str) -> SampledScore:
    if not responses:
        raise ValueError("score_samples needs at least one response")
    expected = normalise_answer(target)
    answers = [response_answer(r) for r in responses]
    chosen = dominant_answer(answers)
    correct = [a is not None and a == expected for a in answers]
    return SampledScore(
        pass_at_1=sum(correct) / len(answers),
        majority_correct=float(chosen is not None and chosen == expected),
        agreement=(sum(a == chosen for a in answers) / len(answers)) if chosen is not None else 0.0,
    )


def mean_scores(scores: Sequence[SampledScore]) -> SampledScore:
    n = len(scores)
    return SampledScore(sum(s.pass_at_1 for s in scores) / n,
                        sum(s.majority_correct for s in scores) / n,
                        sum(s.agreement for s in scores) / n)
