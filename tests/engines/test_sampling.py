"""Per-sequence sampling inside a batch: the inverse-CDF draw and the logits processor."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList

from ireasoner.engines.base import SamplingSpec
from ireasoner.engines.sampling import (
    SeededSampler,
    inverse_cdf_draw,
    sampling_filters,
    sequence_seed,
    sequence_uniforms,
)

PROBS = torch.tensor([0.125, 0.0, 0.5, 0.375, 0.0])  # exact in binary: edges are exact


def test_inverse_cdf_draws_each_token_with_its_probability():
    uniforms = (torch.arange(10_000) + 0.5) / 10_000  # evenly spread: counts are exact
    drawn = inverse_cdf_draw(PROBS.expand(len(uniforms), -1), uniforms)
    counts = torch.bincount(drawn, minlength=len(PROBS))
    assert counts.tolist() == [1_250, 0, 5_000, 3_750, 0]


def test_inverse_cdf_never_draws_a_zero_probability_token_at_the_edges():
    edges = torch.tensor([0.0, 0.125, 0.625, 1.0])
    drawn = inverse_cdf_draw(PROBS.expand(len(edges), -1), edges)
    # 0.125 ends token 0 and token 1 has no mass: token 2. u = 1 (rounding) is the last token.
    assert drawn.tolist() == [0, 2, 3, 3]


def test_inverse_cdf_draw_is_per_row():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert inverse_cdf_draw(probs, torch.tensor([0.9, 0.1])).tolist() == [0, 2]


def test_sequence_seeds_differ_across_samples_and_requests():
    seeds = {sequence_seed(request, sample) for request in range(50) for sample in range(8)}
    assert len(seeds) == 400
    assert sequence_seed(7, 1) == sequence_seed(7, 1)


def test_sequence_uniforms_of_a_row_depend_only_on_its_seed():
    together = sequence_uniforms([3, 4, 5], steps=6)
    alone = sequence_uniforms([4], steps=6)
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together[0], together[2])


def sampler_for(sampling: SamplingSpec, uniforms, suppressed=()) -> SeededSampler:
    return SeededSampler(sampling_filters(sampling, suppressed, torch.device("cpu")), uniforms,
                         prompt_length=2)


def test_sampler_returns_one_hot_scores_and_raw_logprobs():
    scores = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 0.0, 0.0]])
    sampling = SamplingSpec(n=1, temperature=0.7, top_p=1.0, max_new_tokens=4)
    sampler = sampler_for(sampling, torch.tensor([[0.0, 0.99], [0.99, 0.5]]))
    out = sampler(torch.zeros(2, 2, dtype=torch.long), scores.clone())  # step 0
    chosen = out.argmax(dim=-1)
    assert torch.isinf(out).sum().item() == 2 * 3 and (out.max(dim=-1).values == 0).all()
    assert chosen.tolist() == [0, 3]  # u = 0: first token; u = 0.99: the last one
    raw = torch.log_softmax(scores, dim=-1)  # temperature 1, whatever the sampling's
    assert torch.allclose(sampler.logprobs(1)[:, 0], raw[[0, 1], chosen])


def test_sampler_uses_the_uniform_of_the_current_step():
    scores = torch.zeros(1, 4)
    sampler = sampler_for(SamplingSpec(1, 1.0, 1.0, 4), torch.tensor([[0.0, 0.9]]))
    first = sampler(torch.zeros(1, 2, dtype=torch.long), scores).argmax(-1)
    second = sampler(torch.zeros(1, 3, dtype=torch.long), scores).argmax(-1)
    assert (first.item(), second.item()) == (0, 3)
    assert sampler.logprobs(2).shape == (1, 2)


def test_sampler_honours_suppression_and_top_p():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    uniforms = torch.linspace(0, 0.999, 200)[:, None]
    nucleus = SamplingSpec(n=1, temperature=1.0, top_p=0.7, max_new_tokens=1)
    drawn = {sampler_for(nucleus, u[None], suppressed=[0])(torch.zeros(1, 2, dtype=torch.long),
                                                         scores.clone()).argmax(-1).item()
             for u in uniforms}
    assert drawn == {1, 2}  # 0 suppressed; top-p 0.7 of the rest keeps 0.6 and 0.3 of mass


def test_greedy_sampler_takes_the_argmax_of_the_unsuppressed_tokens():
    scores = torch.tensor([[5.0, 4.0, 1.0]])
    sampler = sampler_for(SamplingSpec(1, 0.0, 1.0, 1), None, suppressed=[0])
    assert sampler(torch.zeros(1, 2, dtype=torch.long), scores).argmax(-1).item() == 1


@pytest.mark.parametrize("temperature,top_p,expected", [(1.0, 1.0, 0), (0.5, 1.0, 1),
                                                         (1.0, 0.9, 1), (0.5, 0.9, 2)])
def test_filters_are_built_only_when_they_change_something(temperature, top_p, expected):
    filters = sampling_filters(SamplingSpec(1, temperature, top_p, 1), [], torch.device("cpu"))
    assert isinstance(filters, LogitsProcessorList) and len(filters) == expected
