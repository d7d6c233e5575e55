"""Rollouts with `transformers.generate` on the trainer's own in-memory PeftModel (CPU default,
fallback anywhere vLLM is missing).

Sampling uses the very object the update changes, so there is nothing to sync between
iterations. Each request is one `generate` call with `num_return_sequences = n` under a forked
RNG seeded with the request's seed: its completions depend on the seed, the weights and the
request alone, never on which other requests share the iteration (one call for several
images would pad them together and draw from one shared random stream).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch
from peft import PeftModel
from transformers import (
    GenerationConfig,
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
from ireasoner.policy.adapters import use_adapter
from ireasoner.prompts import render, suppressed_token_ids


class TransformersEngine(RolloutEngine):
    def __init__(
        self,
        model: PreTrainedModel | PeftModel,
        processor: ProcessorMixin,
        *,
        max_repeats: int = 0,
        suppress_special_tokens: bool = True,
    ) -> None:
        check_max_repeats(max_repeats)
        self.model = model
        self.processor = processor
        self.max_repeats = max_repeats
        self.stop_ids = stop_token_ids(model.generation_config, processor.tokenizer)
        self.suppressed_ids = suppressed_token_ids(processor) if suppress_special_tokens else []

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingSpec,
        adapter: AdapterRef | None,
    ) -> list[list[Completion]]:
        with sampling_policy(self.model, adapter), torch.no_grad():
            return [self._generate_one(request, sampling) for request in requests]

    def _generate_one(self, request: GenerationRequest, sampling: SamplingSpec) -> list[Completion]:
        prompt = render(self.processor, request.text)
        inputs = self.processor(images=[request.image], text=[prompt], return_tensors="pt")
        inputs = inputs.to(self.model.device)
        prompt_length = inputs["input_ids"].shape[1]
        # Greedy decoding gives n identical samples: decode once, copy.
        rows = 1 if sampling.greedy else sampling.n
        with torch.random.fork_rng(devices=_rng_devices(self.model.device)):
            torch.manual_seed(request.seed)
            output = self.model.generate(
                **inputs,
                generation_config=self._generation_config(sampling, rows),
                stopping_criteria=self._stopping_criteria(prompt_length),
            )
        new_tokens = output.sequences[:, prompt_length:]
        logprobs = sampled_logprobs(output.logits, new_tokens)
        completions = [self._completion(ids, lps) for ids, lps in zip(new_tokens, logprobs, strict=True)]
        return completions * sampling.n if sampling.greedy else completions

    def _generation_config(self, sampling: SamplingSpec, rows: int) -> GenerationConfig:
        # Every knob is set: unset ones would be filled from the checkpoint's
        # generation_config.json (Qwen2.5-VL-Instruct ships top_k=1, repetition_penalty=1.05).
        return GenerationConfig(
            do_sample=not sampling.greedy,
            temperature=1.0 if sampling.greedy else sampling.temperature,
            top_p=1.0 if sampling.greedy else sampling.top_p,
            top_k=None if sampling.greedy else 0,  # 0 = off; greedy takes no top_k
            min_p=None,
            repetition_penalty=1.0,
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=rows,
            suppress_tokens=self.suppressed_ids or None,
            eos_token_id=self.stop_ids,
            pad_token_id=self.processor.tokenizer.pad_token_id or self.stop_ids[0],
            output_logits=True,
            return_dict_in_generate=True,
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


def sampled_logprobs(step_logits: Sequence[torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """(rows, steps) log-probabilities of the sampled tokens under the raw logits, one step at a
    time so that no (rows, steps, vocab) tensor is ever built."""
    per_step = [
        torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens[:, t, None])[:, 0]
        for t, logits in enumerate(step_logits)
    ]
    return torch.stack(per_step, dim=1).cpu()


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
