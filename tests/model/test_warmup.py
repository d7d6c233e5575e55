import pytest

from ireasoner.data.synthetic import generate_samples
from ireasoner.model.warmup import (
    WARMUP_IMAGE_SIZE,
    follows_solver_format,
    proposer_response,
    solver_parse_rate,
    solver_response,
)
from ireasoner.parsing import parse_question


def test_solver_targets_follow_the_format_the_rate_checks():
    for sample in generate_samples(8, seed=0, size=WARMUP_IMAGE_SIZE):
        for item in sample.qa:
            assert follows_solver_format(solver_response(item))


def test_proposer_targets_parse_back_to_their_question():
    item = generate_samples(1, seed=0, size=WARMUP_IMAGE_SIZE)[0].qa[0]
    assert parse_question(proposer_response(item)).question == item.question


@pytest.mark.parametrize("text", [
    "Step 1: no think tag <answer>4</answer>",
    "<think>\nthe answer is four\n</think><answer>4</answer>",
    "<think>\nStep 1: x\n</think><answer> </answer>",
    "<think>\nStep 1: x\n</think><answer>4",
])
def test_malformed_solver_text_does_not_count_as_formatted(text):
    assert not follows_solver_format(text)


@pytest.mark.slow
def test_warmed_model_mostly_samples_formatted_solver_traces(tiny_backbone):
    held_out = generate_samples(12, seed=424242, size=WARMUP_IMAGE_SIZE)
    rate = solver_parse_rate(tiny_backbone.model, tiny_backbone.processor, held_out, seed=0)
    assert rate >= 0.75  # 11/12 when measured; the random model scores 0
