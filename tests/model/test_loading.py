import json
import os
from pathlib import Path

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


def _checkpoint_with_its_own_code(source: Path, target: Path, marker: Path) -> Path:
    """A copy of the tiny checkpoint of an unknown model type whose config names Python code
    shipped beside it (auto_map); importing that code writes `marker`."""
    target.mkdir()
    for item in source.iterdir():
        if item.is_file():
            os.link(item, target / item.name)
    config = json.loads((source / "config.json").read_text())
    config.update(model_type="shipped_vl", auto_map={
        "AutoConfig": "shipped.ShippedConfig",
        "AutoModelForImageTextToText": "shipped.ShippedModel"})
    (target / "config.json").unlink()
    (target / "config.json").write_text(json.dumps(config))
    (target / "shipped.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig\n"
        "class ShippedConfig(PretrainedConfig):\n    model_type = 'shipped_vl'\n"
        "class ShippedModel:\n    pass\n")
    return target


def test_code_shipped_with_a_checkpoint_never_runs_unless_the_config_allows_it(
        tiny_model_path, tiny_model_config, tmp_path):
    marker = tmp_path / "code-ran"
    path = _checkpoint_with_its_own_code(tiny_model_path, tmp_path / "ckpt", marker)
    assert ModelConfig().trust_remote_code is False
    cfg = tiny_model_config.model_copy(update={"name_or_path": str(path)})
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_backbone(cfg)
    assert not marker.exists()
    allowed = cfg.model_copy(update={"trust_remote_code": True})
    with pytest.raises(Exception):  # noqa: B017 - the shipped classes are dummies; what matters:
        load_backbone(allowed)
    assert marker.read_text() == "ran"  # ... the key is what lets the code run
