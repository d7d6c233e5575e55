"""Rollout engines behind one interface: vLLM on GPU, transformers on CPU (see docs/engines.md)."""

from ireasoner.engines.base import (
    AdapterRef,
    Completion,
    FinishReason,
    GenerationRequest,
    RolloutEngine,
    SamplingSpec,
)
from ireasoner.engines.factory import make_engine, resolve_engine_kind

__all__ = [
    "AdapterRef",
    "Completion",
    "FinishReason",
    "GenerationRequest",
    "RolloutEngine",
    "SamplingSpec",
    "make_engine",
    "resolve_engine_kind",
]
