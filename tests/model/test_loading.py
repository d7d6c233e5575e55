import pytest
import torch

from ireasoner.config import ModelConfig
from ireasoner.devices import resolve_dtype
from ireasoner.model.loading import load_backbone


def test_backbone_is_frozen_fp32_on_cpu(tiny_backbone, tiny_model_path):
    assert tiny_backbone.device == torch.device("cpu")
    assert tiny_backbone.dtype == torch.float32
    assert tiny_backbone.path == str(tiny_model_path)
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())
    assert all(p.dtype == torch.float32 for p in tiny_backbone.model.parameters())


def test_pixel_budget_reaches_the_image_processor(tiny_model_path):
    backbone = load_backbone(ModelConfig(name_or_path=str(tiny_model_path), device="cpu",
                                         min_pixels=784, max_pixels=28 * 28 * 4))
    size = backbone.processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (784, 28 * 28 * 4)


def test_name_tiny_resolves_to_the_cached_tiny_checkpoint(tiny_model_path):
    backbone = load_backbone(ModelConfig(name_or_path="tiny", device="cpu"))
    assert backbone.path == str(tiny_model_path)


def test_auto_dtype_is_bf16_on_cuda_and_fp32_on_cpu():
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float8", torch.device("cpu"))
