"""Classification of raw samples into completions: unit tests on a real tokenizer, no model."""

from __future__ import annotations

import pytest
from transformers import GenerationConfig

from ireasoner.engines.base import AdapterRef, Completion, SamplingSpec
from ireasoner.engines.completions import (
    build_completion,
    check_max_repeats,
    repetition_end,
    stop_token_ids,
)
from ireasoner.model.tiny import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(seed=0)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_repetition_end_finds_the_first_point_a_loop_reaches_max_repeats():
    tokens = [5, 6, 7, 1, 2, 1, 2, 1, 2, 1, 2, 9]
    assert repetition_end(tokens, max_repeats=3) == 9  # "1 2" written a third time ends at 9


def test_repetition_end_prefers_the_earliest_loop_over_any_period():
    tokens = [4, 4, 4, 8, 9, 8, 9, 8, 9]
    assert repetition_end(tokens, max_repeats=3) == 3


def test_repetition_end_is_none_below_the_threshold_and_when_off():
    tokens = [1, 2, 1, 2, 3, 3]
    assert repetition_end(tokens, max_repeats=3) is None
    assert repetition_end([7] * 50, max_repeats=0) is None


def test_max_repeats_of_one_is_refused():
    with pytest.raises(ValueError, match="max_repeats"):
        check_max_repeats(1)
    check_max_repeats(0)
    check_max_repeats(2)


def test_a_stopped_sample_keeps_its_text_and_log_probs(tokenizer):
    ids = encode(tokenizer, "<answer>3</answer>")
    done = build_completion(ids, [-0.5] * len(ids), True, tokenizer, max_repeats=0)
    assert done.finish_reason == "stop"
    assert done.text == "<answer>3</answer>"
    assert done.num_tokens == len(ids) and done.logprobs == [-0.5] * len(ids)
    assert not done.decode_errors


def test_a_sample_without_stop_token_is_cut_at_length(tokenizer):
    ids = encode(tokenizer, "Step 1: the red bar")
    assert build_completion(ids, [0.0] * len(ids), False, tokenizer, 0).finish_reason == "length"


def test_no_tokens_or_only_whitespace_is_empty(tokenizer):
    assert build_completion([], [], True, tokenizer, 0).finish_reason == "empty"
    blank = encode(tokenizer, "  \n ")
    assert build_completion(blank, [0.0] * len(blank), False, tokenizer, 0).finish_reason == "empty"


def test_a_runaway_loop_is_cut_where_it_reached_max_repeats(tokenizer):
    unit = encode(tokenizer, " red")
    ids = encode(tokenizer, "Step 1:") + unit * 10
    logprobs = [float(-i) for i in range(len(ids))]
    done = build_completion(ids, logprobs, False, tokenizer, max_repeats=4)
    assert done.finish_reason == "repetition"
    assert done.text == "Step 1:" + " red" * 4
    assert done.logprobs == logprobs[: done.num_tokens]


def test_invalid_utf8_is_flagged_and_the_completion_still_built(tokenizer):
    # Byte-level BPE: the lone lead byte 0xE2 of a 3-byte character is not valid UTF-8.
    lone_byte = tokenizer.convert_tokens_to_ids("â")
    ids = [*encode(tokenizer, "value "), lone_byte]
    done = build_completion(ids, [0.0] * len(ids), True, tokenizer, 0)
    assert done.decode_errors
    assert done.finish_reason == "stop"
    assert done.text.startswith("value ")


def test_stop_ids_merge_the_generation_config_and_the_tokenizer(tokenizer):
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = GenerationConfig(eos_token_id=[tokenizer.eos_token_id, end_of_text])
    assert stop_token_ids(config, tokenizer) == [tokenizer.eos_token_id, end_of_text]
    assert stop_token_ids(None, tokenizer) == [tokenizer.eos_token_id]


def test_completion_refuses_misaligned_tokens_and_log_probs():
    with pytest.raises(ValueError, match="log-probs"):
        Completion(text="a", token_ids=[1, 2], logprobs=[0.0], finish_reason="stop")


@pytest.mark.parametrize(
    ("field", "value"), [("n", 0), ("temperature", -1.0), ("top_p", 0.0), ("max_new_tokens", 0)]
)
def test_sampling_spec_rejects_out_of_range_values(field, value):
    args = {"n": 5, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, field: value}
    with pytest.raises(ValueError, match=field):
        SamplingSpec(**args)


def test_adapter_ref_defaults_to_in_memory_version_zero():
    assert AdapterRef("solver") == AdapterRef("solver", None, 0)
