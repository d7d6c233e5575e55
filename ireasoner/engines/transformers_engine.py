"""Rollouts with `transformers.generate` on the trainer's own in-memory PeftModel (CPU default,
fallback anywhere vLLM is missing).

Sampling uses the very object the update changes, so there is nothing to sync between
iterations. All B x N sequences of an iteration go through one `generate` call (prompts
left-padded; `requests_per_call` caps the requests per call, 1 = one at a time). Each sequence
draws its tokens from its own random stream, seeded from its request's seed and its sample
index (`ireasoner.engines.sampling`), so its completion depends on that seed, the weights and
its request, not on the random draws of its batch-mates; see `generate` for what the padding
of a shared batch can still change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Literal

import torch
from peft import PeftModel
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    PreTrainedModel,
    ProcessorMixin,
    StoppingCriteria,
    StoppingCriteriaList,
)

from ireasoner.engines.base import (
    AdapterRef,
    Completion,
    GenerationRequest,
    RolloutEngine,
    SamplingSpec,
)
from ireasoner.engines.completions import (
    LONGEST_LOOP,
    build_completion,
    check_max_repeats,
    stop_token_ids,
)
from ireasoner.engines.sampling import (
    SeededSampler,
    sampling_filters,
    sequence_seed,
    sequence_uniforms,
)
from ireasoner.policy.adapters import use_adapter
from ireasoner.prompts import render, suppressed_token_ids

KVCache = Literal["dynamic", "static"]


class TransformersEngine(RolloutEngine):
    def __init__(
        self,
        model: PreTrainedModel | PeftModel,
        processor: ProcessorMixin,
        *,
        max_repeats: int = 0,
        suppress_special_tokens: bool = True,
        requests_per_call: int = 0,
        kv_cache: KVCache = "dynamic",
    ) -> None:
        """`requests_per_call`: requests sampled together in one `generate` call (0 = all of a
        `generate`'s requests). `kv_cache="static"` preallocates the KV cache
        (transformers' `cache_implementation="static"`; on CUDA transformers then compiles the
        decoding step)."""
        check_max_repeats(max_repeats)
        if requests_per_call < 0:
            raise ValueError(f"requests_per_call must be >= 0 (0 = all), got {requests_per_call}")
        self.model = model
        self.processor = processor
        self.max_repeats = max_repeats
        self.requests_per_call = requests_per_call
        self.kv_cache = kv_cache
        self.stop_ids = stop_token_ids(model.generation_config, processor.tokenizer)
        self.suppressed_ids = suppressed_token_ids(processor) if suppress_special_tokens else []

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingSpec,
        adapter: AdapterRef | None,
    ) -> list[list[Completion]]:
        """Determinism: the same requests in the same calls, weights and device give the same
        completions. A sequence's random draws are its own, but its logits are computed beside
        its batch-mates, padded to the longest prompt: batch size and padding can change them
        in the last bits (kernel choice), which flips a draw only when a uniform falls that
        close to a boundary between two tokens. Greedy decodes each request once and copies
        the result n times."""
        step = self.requests_per_call or max(len(requests), 1)
        with sampling_policy(self.model, adapter), torch.no_grad():
            return [
                completions
                for start in range(0, len(requests), step)
                for completions in self._generate_batch(requests[start:start + step], sampling)
            ]

    def _generate_batch(
        self, requests: Sequence[GenerationRequest], sampling: SamplingSpec
    ) -> list[list[Completion]]:
        inputs = self.processor(
            images=[request.image for request in requests],
            text=[render(self.processor, request.text) for request in requests],
            padding=True,
            padding_side="left",
            return_tensors="pt",
        ).to(self.model.device)
        prompt_length = inputs["input_ids"].shape[1]
        rows = 1 if sampling.greedy else sampling.n
        uniforms = None
        if not sampling.greedy:
            # One spare step: generate may run a step past the limit and undo it.
            seeds = [sequence_seed(r.seed, i) for r in requests for i in range(rows)]
            uniforms = sequence_uniforms(seeds, sampling.max_new_tokens + 1).to(self.model.device)
        sampler = SeededSampler(
            sampling_filters(sampling, self.suppressed_ids, self.model.device), uniforms,
            prompt_length,
        )
        # generate's multinomial over the one-hot scores draws from the global RNG without
        # changing the outcome: fork it so that the caller's stream is left untouched.
        with torch.random.fork_rng(devices=_rng_devices(self.model.device)):
            sequences = self.model.generate(
                **inputs,
                generation_config=self._generation_config(sampling, rows),
                logits_processor=LogitsProcessorList([sampler]),
                stopping_criteria=self._stopping_criteria(prompt_length),
            )
        new_tokens = sequences[:, prompt_length:].cpu()
        logprobs = sampler.logprobs(new_tokens.shape[1])
        completions = [self._completion(ids, lps) for ids, lps in zip(new_tokens, logprobs, strict=True)]
        per_request = [completions[i:i + rows] for i in range(0, len(completions), rows)]
        return [batch * sampling.n for batch in per_request] if sampling.greedy else per_request

    def _generation_config(self, sampling: SamplingSpec, rows: int) -> GenerationConfig:
        # SeededSampler does all the choosing and returns one-hot scores. Sampling mode only so
        # that generate accepts num_return_sequences (it expands each request's inputs after
        # encoding its image once); its multinomial then picks the one token left. Every other
        # processor is set off: unset knobs would be filled from the checkpoint's
        # generation_config.json (Qwen2.5-VL-Instruct ships top_k=1, repetition_penalty=1.05),
        # and a processor ahead of the sampler would change the raw logits it scores.
        return GenerationConfig(
            do_sample=True,
            num_beams=1,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            min_p=None,
            repetition_penalty=1.0,
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=rows,
            suppress_tokens=None,
            eos_token_id=self.stop_ids,
            pad_token_id=self.processor.tokenizer.pad_token_id or self.stop_ids[0],
            cache_implementation="static" if self.kv_cache == "static" else None,
            return_dict_in_generate=False,
        )

    def _stopping_criteria(self, prompt_length: int) -> StoppingCriteriaList:
        if self.max_repeats == 0:
            return StoppingCriteriaList()
        return StoppingCriteriaList([LoopStop(prompt_length, self.max_repeats)])

    def _completion(self, new_tokens: torch.Tensor, logprobs: torch.Tensor) -> Completion:
        token_ids = new_tokens.tolist()
        stop_at = next((i for i, t in enumerate(token_ids) if t in self.stop_ids), None)
        end = len(token_ids) if stop_at is None else stop_at
        return build_completion(
            token_ids[:end],
            logprobs[:end].tolist(),
            stopped=stop_at is not None,
            tokenizer=self.processor.tokenizer,
            max_repeats=self.max_repeats,
        )


class LoopStop(StoppingCriteria):
    """Ends a row as soon as its generated tail is one n-gram written `max_repeats` times, so a
    runaway sample stops costing compute (`build_completion` then cuts and labels it)."""

    def __init__(self, prompt_length: int, max_repeats: int) -> None:
        self.prompt_length = prompt_length
        self.max_repeats = max_repeats

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length:]
        looping = torch.zeros(len(generated), dtype=torch.bool, device=input_ids.device)
        for n in range(1, LONGEST_LOOP + 1):
            span = n * self.max_repeats
            if span > generated.shape[1]:
                break
            tail = generated[:, -span:].reshape(len(generated), self.max_repeats, n)
            looping |= (tail == tail[:, :1]).all(dim=(1, 2))
        return looping


@contextmanager
def sampling_policy(model: PreTrainedModel | PeftModel, adapter: AdapterRef | None) -> Iterator[None]:
    """The policy to sample from, in eval mode (no LoRA dropout); the trainer's active adapter
    and train/eval mode are restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with ExitStack() as stack:
            if adapter is None:
                if isinstance(model, PeftModel):
                    stack.enter_context(model.disable_adapter())
            else:
                if not isinstance(model, PeftModel):
                    raise ValueError(
                        f"adapter {adapter.name!r} requested but the model carries no adapters"
                    )
                stack.enter_context(_active_adapter(model, adapter.name))
            yield
    finally:
        model.train(was_training)


@contextmanager
def _active_adapter(model: PeftModel, name: str) -> Iterator[None]:
    previous = model.active_adapter
    use_adapter(model, name)
    try:
        yield
    finally:
        use_adapter(model, previous)


def _rng_devices(device: torch.device) -> list[torch.device]:
    return [device] if device.type == "cuda" else []
