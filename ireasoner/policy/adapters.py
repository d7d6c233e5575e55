"""Two LoRA adapters, "proposer" and "solver", on one frozen backbone (spec §4): the language
model's projections only, never the vision tower (vLLM cannot serve LoRA there)."""

from __future__ import annotations

import peft
from peft import PeftModel, get_peft_model
from torch import nn

from ireasoner.config import LoraConfig

PROPOSER = "proposer"
SOLVER = "solver"
ROLES = (PROPOSER, SOLVER)


def peft_lora_config(lora_cfg: LoraConfig) -> peft.LoraConfig:
    # A string target_modules is a regex PEFT matches against full module names.
    return peft.LoraConfig(
        r=lora_cfg.rank,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=lora_cfg.target_modules,
        bias="none",
    )


def attach_adapters(model: nn.Module, lora_cfg: LoraConfig) -> PeftModel:
    """Wrap `model` with both adapters (fresh: LoRA B is zero, so both start as the backbone);
    "solver" is active. Base weights, vision tower included, stay frozen."""
    if isinstance(model, PeftModel):
        raise ValueError("the model already carries adapters")
    config = peft_lora_config(lora_cfg)
    peft_model = get_peft_model(model, config, adapter_name=SOLVER)
    peft_model.add_adapter(PROPOSER, config)
    use_adapter(peft_model, SOLVER)
    return peft_model


def use_adapter(model: PeftModel, name: str) -> None:
    """Make `name` the active adapter; only its weights then require grad."""
    if name not in model.peft_config:
        raise KeyError(f"no adapter named {name!r}; this model has {sorted(model.peft_config)}")
    model.set_adapter(name)


def adapter_parameters(model: PeftModel, name: str) -> list[nn.Parameter]:
    """The LoRA weights of one adapter (whether or not it is active)."""
    if name not in model.peft_config:
        raise KeyError(f"no adapter named {name!r}; this model has {sorted(model.peft_config)}")
    marker = f".{name}."
    return [param for param_name, param in model.named_parameters() if marker in param_name]
