"""The arguments VLLMEngine starts vLLM with, checked against vLLM's own EngineArgs (a renamed
or removed argument fails here in seconds, not minutes into an engine start)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ireasoner.config import RolloutConfig
from ireasoner.engines.vllm_engine import engine_args

arg_utils = pytest.importorskip("vllm.engine.arg_utils", reason="vllm is not importable here")

pytestmark = pytest.mark.vllm


def _args(tiny_backbone, **rollout) -> dict:
    return engine_args(str(tiny_backbone.path), tiny_backbone.processor,
                       RolloutConfig(**rollout), "auto", 0, "auto", False)


def test_every_argument_is_one_vllm_knows(tiny_backbone):
    known = {field.name for field in dataclasses.fields(arg_utils.EngineArgs)}
    assert set(_args(tiny_backbone)) <= known


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU sizing")
def test_on_cpu_the_kv_cache_has_a_fixed_size_not_a_share_of_free_memory(tiny_backbone):
    assert _args(tiny_backbone)["kv_cache_memory_bytes"] == 256 * 2**20
    assert _args(tiny_backbone, cpu_kv_cache_mib=64)["kv_cache_memory_bytes"] == 64 * 2**20
