"""Rollouts with vLLM: one engine for the whole run, the current LoRA hot-swapped in per call.

The base model is loaded once. Every `AdapterRef(name, path, version)` maps to its own LoRA id,
so a new version (the trainer saved new weights) is loaded from disk on first use and the
version it replaces is dropped, while repeated calls with the same version reuse the loaded
weights. `vllm` is imported here only: the package works without it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, ProcessorMixin

from ireasoner.config import RolloutConfig
from ireasoner.engines.base import (
    AdapterRef,
    Completion,
    GenerationRequest,
    RolloutEngine,
    SamplingSpec,
)
from ireasoner.engines.completions import build_completion, check_max_repeats, stop_token_ids
from ireasoner.prompts import render, suppressed_token_ids

ADAPTER_CONFIG = "adapter_config.json"
# On CPU, vLLM reads gpu_memory_utilization as the fraction of host RAM to reserve; its default
# share of an accelerator would take most of the machine.
CPU_MEMORY_FRACTION = 0.1


class VLLMEngine(RolloutEngine):
    def __init__(
        self,
        model_path: str,
        processor: ProcessorMixin,
        rollout: RolloutConfig,
        *,
        dtype: str = "auto",
        seed: int = 0,
        load_format: str = "auto",
    ) -> None:
        check_max_repeats(rollout.max_repeats)
        from vllm import LLM  # lazy: vllm is an optional dependency

        self.processor = processor
        self.rollout = rollout
        self.stop_ids = stop_token_ids(_generation_config(model_path), processor.tokenizer)
        self.sleep_enabled = rollout.sleep_during_update and _sleep_mode_available()
        self.asleep = False
        self._llm = LLM(**engine_args(model_path, processor, rollout, dtype, seed, load_format,
                                      self.sleep_enabled))
        vocab_size = self._llm.llm_engine.model_config.get_vocab_size()
        self.allowed_ids = _allowed_ids(vocab_size, processor, rollout.suppress_special_tokens)
        self._lora_ids: dict[tuple[str, int], int] = {}
        self._next_lora_id = 1

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingSpec,
        adapter: AdapterRef | None,
    ) -> list[list[Completion]]:
        self.wake()
        lora = self._lora_request(adapter) if adapter is not None else None
        prompts = [
            {"prompt": render(self.processor, r.text), "multi_modal_data": {"image": r.image}}
            for r in requests
        ]
        params = [self._sampling_params(sampling, r.seed) for r in requests]
        outputs = self._llm.generate(prompts, params, lora_request=lora, use_tqdm=False)
        # Greedy decoding is sampled once per request (vLLM refuses n > 1) and copied n times.
        copies = sampling.n if sampling.greedy else 1
        return [[self._completion(s) for s in output.outputs] * copies for output in outputs]

    def sleep(self) -> None:
        """Level 1: weights to host memory, KV cache dropped. A no-op where the platform has no
        sleep mode (vLLM on CPU) or rollout.sleep_during_update is off."""
        if self.sleep_enabled and not self.asleep:
            self._llm.sleep(level=1)
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self._llm.wake_up()
            self.asleep = False
            # LoRA slots are not documented to survive sleep: reload adapters from disk on use.
            self._retire_all()

    def close(self) -> None:
        self._llm.llm_engine.engine_core.shutdown()

    def lora_id(self, adapter: AdapterRef) -> int | None:
        """The vLLM LoRA id serving this adapter version, or None if none is loaded."""
        return self._lora_ids.get((adapter.name, adapter.version))

    def _lora_request(self, adapter: AdapterRef) -> Any:
        from vllm.lora.request import LoRARequest

        key = (adapter.name, adapter.version)
        if key not in self._lora_ids:
            check_adapter_dir(adapter, self.rollout.max_lora_rank)
            self._retire(adapter.name)
            self._lora_ids[key] = self._next_lora_id
            self._next_lora_id += 1
        return LoRARequest(f"{adapter.name}-v{adapter.version}", self._lora_ids[key],
                           str(adapter.path))

    def _retire(self, name: str) -> None:
        for key in [k for k in self._lora_ids if k[0] == name]:
            self._llm.llm_engine.remove_lora(self._lora_ids.pop(key))

    def _retire_all(self) -> None:
        for name in {name for name, _ in self._lora_ids}:
            self._retire(name)

    def _sampling_params(self, sampling: SamplingSpec, seed: int) -> Any:
        from vllm import SamplingParams

        # vLLM seeds the i-th of the n samples with seed + i. Log-probs are the raw model's
        # (logprobs_mode "raw_logprobs"), as the transformers engine reports them.
        return SamplingParams(
            n=1 if sampling.greedy else sampling.n,
            seed=seed,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            logprobs=0,
            stop_token_ids=self.stop_ids,
            allowed_token_ids=self.allowed_ids,
            skip_special_tokens=False,
            detokenize=False,  # text is decoded in build_completion, as for the other engine
        )

    def _completion(self, sample: Any) -> Completion:
        token_ids = list(sample.token_ids)
        logprobs = [step[token].logprob for step, token in zip(sample.logprobs, token_ids,
                                                              strict=True)]
        stopped = sample.finish_reason == "stop"
        if stopped and token_ids and token_ids[-1] in self.stop_ids:
            token_ids, logprobs = token_ids[:-1], logprobs[:-1]
        return build_completion(token_ids, logprobs, stopped, self.processor.tokenizer,
                                self.rollout.max_repeats)


def engine_args(
    model_path: str,
    processor: ProcessorMixin,
    rollout: RolloutConfig,
    dtype: str,
    seed: int,
    load_format: str,
    sleep_enabled: bool,
) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` for this run."""
    on_cpu = not torch.cuda.is_available()
    return {
        "model": model_path,
        "dtype": "float32" if on_cpu else dtype,
        "seed": seed,
        "load_format": load_format,
        "enable_lora": True,
        "max_lora_rank": rollout.max_lora_rank,
        "max_loras": 2,  # the proposer and the solver
        "limit_mm_per_prompt": {"image": 1},
        # The processor's pixel budget decides how many image tokens a prompt gets: vLLM must
        # use the same one as the log-prob code, or the two would score different prompts.
        "mm_processor_kwargs": pixel_budget(processor),
        "gpu_memory_utilization": CPU_MEMORY_FRACTION if on_cpu else rollout.gpu_memory_utilization,
        # On CPU an explicit KV cache size: vLLM then skips its free-memory fraction checks.
        "kv_cache_memory_bytes": rollout.cpu_kv_cache_mib * 2**20 if on_cpu else None,
        "tensor_parallel_size": rollout.tensor_parallel_size,
        "max_model_len": rollout.max_model_len,
        "enable_sleep_mode": sleep_enabled,
        "enforce_eager": on_cpu,  # no CUDA graphs to capture on CPU
        # Sampling defaults come from SamplingParams alone, not the checkpoint's
        # generation_config.json (Qwen2.5-VL-Instruct's sets top_k=1, repetition_penalty=1.05).
        "generation_config": "vllm",
    }


def pixel_budget(processor: ProcessorMixin) -> dict[str, int]:
    size = processor.image_processor.size
    return {"min_pixels": int(size["shortest_edge"]), "max_pixels": int(size["longest_edge"])}


def check_adapter_dir(adapter: AdapterRef, max_lora_rank: int) -> None:
    """Fail before vLLM does, with the reason: no path, no saved adapter, or a rank too big."""
    if adapter.path is None:
        raise ValueError(f"adapter {adapter.name!r}: vLLM loads adapters from disk; path is None")
    config_file = Path(adapter.path) / ADAPTER_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"adapter {adapter.name!r}: no {ADAPTER_CONFIG} in {adapter.path}")
    rank = json.loads(config_file.read_text(encoding="utf-8"))["r"]
    if rank > max_lora_rank:
        raise ValueError(
            f"adapter {adapter.name!r} has rank {rank} > rollout.max_lora_rank {max_lora_rank}"
        )


def _allowed_ids(vocab_size: int, processor: ProcessorMixin, suppress: bool) -> list[int] | None:
    if not suppress:
        return None
    banned = set(suppressed_token_ids(processor))
    return [token for token in range(vocab_size) if token not in banned]


def _generation_config(model_path: str) -> GenerationConfig | None:
    try:
        return GenerationConfig.from_pretrained(model_path)
    except OSError:  # a checkpoint without generation_config.json: the tokenizer's eos only
        return None


def _sleep_mode_available() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_sleep_mode_available()
