import pytest
import torch

from ireasoner.config import LoraConfig
from ireasoner.model.loading import load_backbone
from ireasoner.policy.adapters import (
    PROPOSER,
    SOLVER,
    adapter_parameters,
    attach_adapters,
    use_adapter,
)


@pytest.fixture
def peft_model(tiny_model_config):
    return attach_adapters(load_backbone(tiny_model_config).model, LoraConfig(rank=4, alpha=8))


def test_lora_lands_on_the_language_model_only(peft_model):
    lora_modules = [name for name, _ in peft_model.named_modules() if name.endswith("lora_A")]
    assert lora_modules
    assert all(".language_model." in name for name in lora_modules)
    assert not any(".visual." in name for name in lora_modules)
    projections = {name.split(".")[-2] for name in lora_modules}
    assert projections == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                           "down_proj"}


def test_only_the_active_adapter_trains(peft_model):
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in peft_model.named_parameters()
                         if f".{SOLVER}." in name}
    use_adapter(peft_model, PROPOSER)
    assert all(p.requires_grad for p in adapter_parameters(peft_model, PROPOSER))
    assert not any(p.requires_grad for p in adapter_parameters(peft_model, SOLVER))


def test_adapters_have_separate_weights_of_the_configured_rank(peft_model):
    solver, proposer = adapter_parameters(peft_model, SOLVER), adapter_parameters(peft_model,
                                                                                  PROPOSER)
    assert len(solver) == len(proposer) > 0
    assert not {id(p) for p in solver} & {id(p) for p in proposer}
    assert peft_model.peft_config[SOLVER].r == 4


def test_unknown_adapter_name_is_refused(peft_model):
    with pytest.raises(KeyError, match="critic"):
        use_adapter(peft_model, "critic")


def test_fresh_adapters_leave_the_backbone_output_unchanged(peft_model, tiny_backbone):
    input_ids = torch.tensor([[20, 30, 40, 50]])
    peft_model.eval()
    with torch.no_grad():
        assert torch.allclose(peft_model(input_ids=input_ids).logits,
                              tiny_backbone.model(input_ids=input_ids).logits, atol=1e-6)
