"""Raw sampled tokens -> `Completion`, the same way for every engine.

Bad output is classified, never raised: an empty answer, a cut at the token limit, a runaway
loop or bytes that are not UTF-8 all become an ordinary completion with a reason the rewards
and the run's statistics can count.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import GenerationConfig, PreTrainedTokenizerBase

from ireasoner.engines.base import Completion, FinishReason

# Longest n-gram the loop detector looks for; longer cycles are rare and cost O(L * n) to find.
LONGEST_LOOP = 32
REPLACEMENT_CHAR = "\ufffd"


def stop_token_ids(
    generation_config: GenerationConfig | None, tokenizer: PreTrainedTokenizerBase
) -> list[int]:
    """The checkpoint's end-of-sequence ids (generation_config.json may list several) and the
    tokenizer's: both engines stop on exactly this set."""
    configured = generation_config.eos_token_id if generation_config is not None else None
    if isinstance(configured, int):
        configured = [configured]
    ids = [*(configured or []), tokenizer.eos_token_id]
    ids = list(dict.fromkeys(i for i in ids if i is not None))
    if not ids:
        raise ValueError("neither the generation config nor the tokenizer names an eos token")
    return ids


def check_max_repeats(max_repeats: int) -> None:
    if max_repeats == 1 or max_repeats < 0:
        raise ValueError(
            f"rollout.max_repeats must be 0 (off) or >= 2, got {max_repeats}: one occurrence "
            "of an n-gram is not a repetition"
        )


def repetition_end(token_ids: Sequence[int], max_repeats: int) -> int | None:
    """The shortest prefix length at which the sequence ends with one n-gram
    (n <= LONGEST_LOOP) written `max_repeats` times in a row, or None (also when max_repeats
    is 0). A period-n loop repeated r times is a run of (r - 1) * n positions where
    token[j] == token[j - n], so one pass per n with a run counter finds it."""
    if max_repeats == 0:
        return None
    earliest: int | None = None
    for n in range(1, min(LONGEST_LOOP, len(token_ids) // max_repeats) + 1):
        needed = (max_repeats - 1) * n
        run = 0
        for j in range(n, len(token_ids) if earliest is None else earliest):
            run = run + 1 if token_ids[j] == token_ids[j - n] else 0
            if run >= needed:
                earliest = j + 1
                break
    return earliest


def build_completion(
    token_ids: Sequence[int],
    logprobs: Sequence[float],
    stopped: bool,
    tokenizer: PreTrainedTokenizerBase,
    max_repeats: int,
) -> Completion:
    """`token_ids` exclude the stop token; `stopped` says whether one ended the sample (else it
    ran to the token limit). A runaway loop is cut where it reached `max_repeats`."""
    token_ids, logprobs = list(token_ids), list(logprobs)
    reason: FinishReason = "stop" if stopped else "length"
    loop_end = repetition_end(token_ids, max_repeats)
    if loop_end is not None:
        token_ids, logprobs, reason = token_ids[:loop_end], logprobs[:loop_end], "repetition"
    # Special tokens stay in the text, so that text and token_ids tell the same story.
    text = tokenizer.decode(token_ids, skip_special_tokens=False)
    if not text.strip():
        reason = "empty"
    return Completion(
        text=text,
        token_ids=token_ids,
        logprobs=[float(value) for value in logprobs],
        finish_reason=reason,
        decode_errors=REPLACEMENT_CHAR in text,
    )
