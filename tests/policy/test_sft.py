import pytest
import torch

from ireasoner.model.loading import load_backbone
from ireasoner.policy.adapters import PROPOSER, SOLVER, adapter_parameters
from ireasoner.policy.sft import SFTExample, sft_train
from ireasoner.prompts import render


@pytest.fixture
def examples(tiny_backbone, tiny_images):
    prompt = render(tiny_backbone.processor, "How many bars?")
    return [SFTExample(tiny_images[0], prompt, "<answer>3</answer>"),
            SFTExample(tiny_images[1], prompt, "<answer>2</answer>")]


def test_sft_lowers_the_loss_on_its_examples(tiny_model_config, examples):
    backbone = load_backbone(tiny_model_config)
    backbone.model.requires_grad_(True)
    stats = sft_train(backbone.model, backbone.processor, examples, steps=6, lr=1e-3,
                      batch_size=2, micro_batch_size=1)
    assert stats.steps == 6
    assert stats.losses[-1] < 0.8 * stats.losses[0]


def test_sft_trains_only_what_requires_grad(tiny_lora_model, tiny_backbone, examples):
    proposer_before = [p.clone() for p in adapter_parameters(tiny_lora_model, PROPOSER)]
    solver_before = [p.clone() for p in adapter_parameters(tiny_lora_model, SOLVER)]
    base_before = tiny_lora_model.base_model.model.lm_head.weight.clone()
    sft_train(tiny_lora_model, tiny_backbone.processor, examples, epochs=1, lr=1e-2,
              batch_size=2, micro_batch_size=2)
    assert any(not torch.equal(a, b)
               for a, b in zip(solver_before, adapter_parameters(tiny_lora_model, SOLVER),
                               strict=True))
    assert all(torch.equal(a, b)
               for a, b in zip(proposer_before, adapter_parameters(tiny_lora_model, PROPOSER),
                               strict=True))
    assert torch.equal(base_before, tiny_lora_model.base_model.model.lm_head.weight)


def test_sft_refuses_a_model_with_nothing_to_train(tiny_backbone, examples):
    with pytest.raises(ValueError, match="requires grad"):
        sft_train(tiny_backbone.model, tiny_backbone.processor, examples, steps=1)


def test_sft_needs_exactly_one_of_steps_and_epochs(tiny_backbone, examples):
    with pytest.raises(ValueError, match="exactly one"):
        sft_train(tiny_backbone.model, tiny_backbone.processor, examples, steps=1, epochs=1)
