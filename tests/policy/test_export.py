import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from ireasoner.policy.adapters import SOLVER, use_adapter
from ireasoner.policy.export import export_merged
from ireasoner.prompts import render


@pytest.fixture
def solver_adapter_dir(tiny_lora_model, tmp_path):
    use_adapter(tiny_lora_model, SOLVER)
    tiny_lora_model.save_pretrained(tmp_path / "adapters", selected_adapters=[SOLVER])
    return tmp_path / "adapters" / SOLVER


def test_merged_export_matches_base_plus_solver_adapter(
    tiny_lora_model, tiny_model_path, solver_adapter_dir, tiny_images, tmp_path
):
    out = export_merged(str(tiny_model_path), solver_adapter_dir, tmp_path / "merged")
    merged = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    inputs = processor(images=[tiny_images[0]], text=[render(processor, "How many bars?")],
                       return_tensors="pt")
    use_adapter(tiny_lora_model, SOLVER)
    with torch.no_grad():
        expected = tiny_lora_model(**inputs).logits
        got = merged(**inputs).logits
        with tiny_lora_model.disable_adapter():
            base = tiny_lora_model(**inputs).logits
    assert not torch.allclose(expected, base, atol=1e-3)
    assert torch.allclose(got, expected, atol=1e-4)
    greedy = {"do_sample": False, "max_new_tokens": 8}
    assert torch.equal(merged.generate(**inputs, **greedy),
                       tiny_lora_model.generate(**inputs, **greedy))


def test_export_refuses_a_directory_without_an_adapter(tiny_model_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        export_merged(str(tiny_model_path), tmp_path, tmp_path / "merged")
