"""`make_engine`: the rollout engine a config asks for."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from peft import PeftModel

from ireasoner.config import RolloutConfig
from ireasoner.engines.base import RolloutEngine
from ireasoner.model.loading import Backbone

log = logging.getLogger(__name__)

_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def resolve_engine_kind(requested: str) -> str:
    """"auto" is vLLM where it can run (CUDA and an installed vllm), else transformers."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    if torch.cuda.is_available():
        log.warning("rollout.engine auto: CUDA but no vllm installed; using transformers")
    return "transformers"


def make_engine(
    rollout: RolloutConfig,
    backbone: Backbone,
    policy: PeftModel | None = None,
    seed: int = 0,
    log_dir: Path | str = ".",
) -> RolloutEngine:
    """`policy` is the trainer's PeftModel (the transformers engine samples from it in place;
    without it, from the bare backbone). The vLLM engines load `backbone.path` themselves and
    take adapters from disk; a vLLM server this starts logs to `log_dir`."""
    kind = resolve_engine_kind(rollout.engine)
    if kind == "vllm_server":
        from ireasoner.engines.vllm_server import VLLMServerEngine

        return VLLMServerEngine(backbone.path, backbone.processor, rollout,
                                dtype=_DTYPE_NAMES[backbone.dtype], seed=seed, log_dir=log_dir)
    if kind == "vllm":
        from ireasoner.engines.vllm_engine import VLLMEngine

        return VLLMEngine(backbone.path, backbone.processor, rollout,
                          dtype=_DTYPE_NAMES[backbone.dtype], seed=seed)
    from ireasoner.engines.transformers_engine import TransformersEngine

    return TransformersEngine(
        policy if policy is not None else backbone.model,
        backbone.processor,
        max_repeats=rollout.max_repeats,
        suppress_special_tokens=rollout.suppress_special_tokens,
        requests_per_call=rollout.requests_per_call,
        kv_cache=rollout.kv_cache,
    )
