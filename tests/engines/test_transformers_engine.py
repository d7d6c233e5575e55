"""TransformersEngine on the tiny Qwen2.5-VL with the project's two adapters."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from ireasoner.config import LoraConfig, RolloutConfig
from ireasoner.engines import AdapterRef, GenerationRequest, SamplingSpec, make_engine
from ireasoner.engines.transformers_engine import LoopStop, TransformersEngine
from ireasoner.model.loading import load_backbone
from ireasoner.model.warmup import TINY_SOLVER
from ireasoner.policy.adapters import PROPOSER, SOLVER, attach_adapters, use_adapter
from ireasoner.policy.logprobs import response_logprobs
from ireasoner.prompts import render, solver_text, suppressed_token_ids

SAMPLE = SamplingSpec(n=4, temperature=1.0, top_p=1.0, max_new_tokens=16)
GREEDY = SamplingSpec(n=3, temperature=0.0, top_p=1.0, max_new_tokens=12)
SOLVER_REF = AdapterRef(SOLVER)
# One request's log-probs from a left-padded batch and from itself alone go through other
# kernels: float32 rounding, up to 2.4e-4 apart on an AVX-512 CPU (2026-12-06; 1e-4 held on the
# CPU before). A padding, position or adapter mistake moves them by far more.
LOGPROB_ATOL = 1e-3


@pytest.fixture(scope="module")
def backbone(tiny_model_config):
    return load_backbone(tiny_model_config)  # its own copy: adapters are attached to it


@pytest.fixture(scope="module")
def policy(backbone) -> PeftModel:
    """"proposer" is fresh (LoRA B = 0: the base model); "solver" has random weights."""
    model = attach_adapters(backbone.model, LoraConfig(rank=8, alpha=16.0, dropout=0.0))
    generator = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():
        if f".{SOLVER}." in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.5
    return model


@pytest.fixture(scope="module")
def engine(backbone, policy) -> TransformersEngine:
    return make_engine(RolloutConfig(engine="transformers"), backbone, policy)


@pytest.fixture(scope="module")
def requests(tiny_images) -> list[GenerationRequest]:
    questions = ["How many bars are there?", "What is the largest value?"]
    return [
        GenerationRequest(image, solver_text(TINY_SOLVER, question), seed=7 + i)
        for i, (image, question) in enumerate(zip(tiny_images, questions, strict=False))
    ]


def test_each_request_gets_n_completions_with_one_logprob_per_token(engine, requests):
    batches = engine.generate(requests, SAMPLE, SOLVER_REF)
    assert [len(batch) for batch in batches] == [SAMPLE.n] * len(requests)
    for completion in (c for batch in batches for c in batch):
        assert completion.num_tokens == len(completion.token_ids) == len(completion.logprobs)
        assert completion.num_tokens <= SAMPLE.max_new_tokens
        assert all(value <= 0.0 for value in completion.logprobs)


@pytest.fixture(scope="module")
def mixed_requests(tiny_images) -> list[GenerationRequest]:
    """Three images of different sizes and questions of different lengths: a batch of them is
    left-padded unevenly."""
    questions = ["How many bars are there?", "Is it red?",
                 "Which bar is the tallest one, and by how much does it exceed the shortest?"]
    return [
        GenerationRequest(image, solver_text(TINY_SOLVER, question), seed=21 + i)
        for i, (image, question) in enumerate(zip(tiny_images, questions, strict=True))
    ]


def assert_same_completions(first: list[list], second: list[list]) -> None:
    """Token for token; log-probs to float32 rounding (a padded batch computes them with other
    kernels, so not bit for bit)."""
    assert [[c.token_ids for c in batch] for batch in first] == \
        [[c.token_ids for c in batch] for batch in second]
    assert [[c.finish_reason for c in batch] for batch in first] == \
        [[c.finish_reason for c in batch] for batch in second]
    for a, b in zip((c for batch in first for c in batch), (c for batch in second for c in batch),
                    strict=True):
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs),
                              atol=LOGPROB_ATOL)


def test_prompts_of_one_batch_differ_in_length(backbone, mixed_requests):
    lengths = {len(backbone.processor(images=[r.image], text=[render(backbone.processor, r.text)])
                   ["input_ids"][0]) for r in mixed_requests}
    assert len(lengths) == len(mixed_requests)  # else left padding would go untested below


def test_batched_greedy_equals_one_at_a_time_greedy(backbone, policy, engine, mixed_requests):
    one_at_a_time = TransformersEngine(policy, backbone.processor, requests_per_call=1)
    long = SamplingSpec(n=2, temperature=0.0, top_p=1.0, max_new_tokens=48)
    for adapter in (None, SOLVER_REF):
        assert_same_completions(engine.generate(mixed_requests, long, adapter),
                                one_at_a_time.generate(mixed_requests, long, adapter))


def test_same_seed_reproduces_completions_whatever_the_batch(engine, mixed_requests):
    together = engine.generate(mixed_requests, SAMPLE, SOLVER_REF)
    alone = [engine.generate([request], SAMPLE, SOLVER_REF)[0] for request in mixed_requests]
    assert_same_completions(together, alone)
    reordered = engine.generate(mixed_requests[::-1], SAMPLE, SOLVER_REF)
    assert_same_completions(together, reordered[::-1])


def test_same_batch_reproduces_completions_exactly(engine, mixed_requests):
    assert engine.generate(mixed_requests, SAMPLE, SOLVER_REF) == \
        engine.generate(mixed_requests, SAMPLE, SOLVER_REF)


def test_static_kv_cache_gives_the_dynamic_caches_completions(backbone, policy, engine,
                                                              mixed_requests):
    static = TransformersEngine(policy, backbone.processor, kv_cache="static")
    caches: list[str] = []
    hook = backbone.model.register_forward_pre_hook(  # the Qwen2.5-VL module under the adapters
        lambda module, args, kwargs: caches.append(type(kwargs["past_key_values"]).__name__),
        with_kwargs=True)
    try:
        sampled = static.generate(mixed_requests, SAMPLE, SOLVER_REF)
    finally:
        hook.remove()
    assert set(caches) == {"StaticCache"}
    assert_same_completions(sampled, engine.generate(mixed_requests, SAMPLE, SOLVER_REF))


def test_callers_random_stream_is_left_untouched(engine, requests):
    state = torch.random.get_rng_state()
    engine.generate(requests, SAMPLE, SOLVER_REF)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_negative_requests_per_call_is_refused(backbone, policy):
    with pytest.raises(ValueError, match="requests_per_call"):
        TransformersEngine(policy, backbone.processor, requests_per_call=-1)


def test_another_seed_gives_other_completions(engine, requests):
    first = engine.generate(requests[:1], SAMPLE, SOLVER_REF)[0]
    reseeded = GenerationRequest(requests[0].image, requests[0].text, seed=requests[0].seed + 1)
    second = engine.generate([reseeded], SAMPLE, SOLVER_REF)[0]
    assert [c.token_ids for c in first] != [c.token_ids for c in second]
    assert len({tuple(c.token_ids) for c in first}) > 1  # the n rollouts are not copies


def test_logprobs_equal_the_policys_recomputed_logprobs(engine, policy, backbone, mixed_requests):
    # Sampled in one left-padded batch, scored one request at a time without padding.
    for request, completions in zip(mixed_requests,
                                    engine.generate(mixed_requests, SAMPLE, SOLVER_REF), strict=True):
        prompt = render(backbone.processor, request.text)
        use_adapter(policy, SOLVER)
        with torch.no_grad():
            scored = response_logprobs(
                policy, backbone.processor, [request.image] * len(completions),
                [prompt] * len(completions), [c.token_ids for c in completions],
                micro_batch_size=4,
            )
        for row, completion in enumerate(completions):
            recomputed = scored.logprobs[row, : completion.num_tokens]
            assert torch.allclose(recomputed, torch.tensor(completion.logprobs),
                                  atol=LOGPROB_ATOL)


def test_no_adapter_samples_the_base_model(engine, requests):
    base = engine.generate(requests, GREEDY, None)
    fresh = engine.generate(requests, GREEDY, AdapterRef(PROPOSER))  # zero LoRA B: the base
    trained = engine.generate(requests, GREEDY, SOLVER_REF)
    assert base == fresh
    assert base != trained


def test_greedy_gives_n_identical_completions(engine, requests):
    batch = engine.generate(requests[:1], GREEDY, SOLVER_REF)[0]
    assert len(batch) == GREEDY.n
    assert all(completion == batch[0] for completion in batch)


def test_trainers_active_adapter_and_mode_are_restored(engine, policy, requests):
    use_adapter(policy, PROPOSER)
    policy.train()
    engine.generate(requests[:1], GREEDY, SOLVER_REF)
    assert policy.active_adapter == PROPOSER
    assert policy.training
    policy.eval()


def test_unknown_adapter_is_refused(engine, requests):
    with pytest.raises(KeyError, match="critic"):
        engine.generate(requests[:1], GREEDY, AdapterRef("critic"))


def test_adapter_on_a_model_without_adapters_is_refused(tiny_backbone, requests):
    engine = TransformersEngine(tiny_backbone.model, tiny_backbone.processor)
    with pytest.raises(ValueError, match="no adapters"):
        engine.generate(requests[:1], GREEDY, SOLVER_REF)


def test_token_limit_is_reported_as_length(engine, requests):
    limit = SamplingSpec(n=3, temperature=1.0, top_p=1.0, max_new_tokens=2)
    for completion in engine.generate(requests, limit, SOLVER_REF)[0]:
        assert completion.num_tokens <= 2
        if completion.num_tokens == 2:
            assert completion.finish_reason in ("length", "empty")


def test_stop_and_suppressed_tokens_never_appear_in_completions(engine, backbone, requests):
    # The random solver adapter samples near-noise: the likeliest to hit a special token.
    noisy = SamplingSpec(n=4, temperature=1.0, top_p=1.0, max_new_tokens=32)
    banned = set(suppressed_token_ids(backbone.processor)) | set(engine.stop_ids)
    completions = [c for batch in engine.generate(requests, noisy, SOLVER_REF) for c in batch]
    assert all(banned.isdisjoint(c.token_ids) for c in completions)


def test_a_finished_answer_stops_without_its_stop_token(engine, requests):
    # Greedy on the format-warmed base model writes a whole answer, then its end-of-turn.
    room = SamplingSpec(n=1, temperature=0.0, top_p=1.0, max_new_tokens=96)
    completion = engine.generate(requests[:1], room, None)[0][0]
    assert completion.finish_reason == "stop"
    assert completion.text.endswith("</answer>")
    assert engine.stop_ids[0] not in completion.token_ids


def test_loop_stop_ends_only_the_looping_rows():
    prompt = [9, 9, 9, 9]
    rows = torch.tensor([prompt + [1, 2, 1, 2, 1, 2], prompt + [1, 2, 3, 4, 5, 6]])
    stop = LoopStop(prompt_length=len(prompt), max_repeats=3)
    assert stop(rows, torch.zeros(2, 10)).tolist() == [True, False]


def test_runaway_loop_is_cut_and_labelled(backbone, policy, requests):
    # Greedy decoding of a random adapter settles into a cycle; any cycle of >= 2 repeats counts.
    engine = TransformersEngine(policy, backbone.processor, max_repeats=2)
    long = SamplingSpec(n=1, temperature=0.0, top_p=1.0, max_new_tokens=64)
    completion = engine.generate(requests[:1], long, SOLVER_REF)[0][0]
    assert completion.finish_reason == "repetition"
    assert completion.num_tokens < long.max_new_tokens


def test_auto_engine_on_cpu_is_transformers(backbone, policy):
    assert isinstance(make_engine(RolloutConfig(engine="auto"), backbone, policy),
                      TransformersEngine)
