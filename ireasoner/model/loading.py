"""Load a Qwen2.5-VL backbone (hub id, local checkpoint, "tiny" or "world") with its processor."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from ireasoner.config import ModelConfig
from ireasoner.devices import resolve_device, resolve_dtype
from ireasoner.model.tiny import ensure_tiny_model
from ireasoner.model.world import WORLD_NAME, ensure_world_model

TINY_NAME = "tiny"


@dataclass
class Backbone:
    model: PreTrainedModel
    processor: ProcessorMixin
    device: torch.device
    dtype: torch.dtype
    path: str  # the resolved local directory or hub id


def resolve_path(cfg: ModelConfig) -> str:
    if cfg.name_or_path == TINY_NAME:
        return str(ensure_tiny_model(cfg.tiny_seed))
    if cfg.name_or_path == WORLD_NAME:
        return str(ensure_world_model(cfg.tiny_seed))
    return cfg.name_or_path


def load_processor(path: str, min_pixels: int, max_pixels: int,
                   trust_remote_code: bool = False) -> ProcessorMixin:
    # The pixel budget decides how many image tokens a prompt carries, so it must be the same
    # for generation and for log-probs: it is set once here.
    return AutoProcessor.from_pretrained(
        path, size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        trust_remote_code=trust_remote_code,
    )


def load_backbone(cfg: ModelConfig) -> Backbone:
    """The frozen backbone: every base weight has requires_grad False (LoRA trains on top)."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    path = resolve_path(cfg)
    attn = None if cfg.attn_implementation == "auto" else cfg.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=dtype, attn_implementation=attn, trust_remote_code=cfg.trust_remote_code
    ).to(device)
    model.requires_grad_(False)
    model.eval()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    processor = load_processor(path, cfg.min_pixels, cfg.max_pixels, cfg.trust_remote_code)
    return Backbone(model=model, processor=processor, device=device, dtype=dtype, path=path)
