"""Save and restore everything a resumed run needs to continue exactly where it stopped.

Layout of a state directory (no pickle anywhere):

    adapters/<role>/adapter_model.safetensors, adapter_config.json   PEFT's own format
    optimizer/<role>.safetensors                                      AdamW moments and steps
    rng.safetensors                                                   torch CPU / CUDA generators
    state.json      per role: step, baseline, β, optimizer structure; python and numpy RNG

The directory is written to a temporary sibling and renamed into place, so a reader sees the
whole previous state or the whole new one. Save → load → update gives bitwise the loss and
weights of continuing in memory on CPU fp32 (LoRA dropout included: the RNG states travel too);
on CUDA, nondeterministic kernels may differ in the last bits.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from ireasoner.policy.update import RoleTrainer
from storage.atomic import atomic_dir

FORMAT_VERSION = 1
STATE_FILE = "state.json"
RNG_FILE = "rng.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def save_policy_state(directory: str | Path, model: PeftModel, trainers: Sequence[RoleTrainer]) -> Path:
    """Write the adapters, optimizers, baselines, β, step counters and RNG states of `trainers`."""
    roles = _roles(trainers)
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp / "adapters", selected_adapters=roles)
        (tmp / "optimizer").mkdir()
        role_states = {}
        for trainer in trainers:
            tensors, structure = flatten_optimizer_state(trainer.optimizer.state_dict())
            save_file(tensors, str(tmp / "optimizer" / f"{trainer.role}.safetensors"))
            role_states[trainer.role] = {
                "step": trainer.step,
                "baseline": trainer.baseline.state_dict(),
                "beta": trainer.beta.state_dict(),
                "optimizer": structure,
            }
        rng_tensors, rng_json = capture_rng_state()
        save_file(rng_tensors, str(tmp / RNG_FILE))
        state = {"format_version": FORMAT_VERSION, "roles": role_states, "rng": rng_json}
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, allow_nan=False) + "\n")
    return directory


def load_policy_state(directory: str | Path, model: PeftModel, trainers: Sequence[RoleTrainer]) -> None:
    """Restore a `save_policy_state` directory into an equally configured model and trainers."""
    directory = Path(directory)
    state = _read_state(directory)
    roles = _roles(trainers)
    if sorted(state["roles"]) != sorted(roles):
        raise ValueError(
            f"{directory} holds roles {sorted(state['roles'])}, but trainers for {sorted(roles)} "
            "were given"
        )
    for trainer in trainers:
        saved = state["roles"][trainer.role]
        load_adapter_weights(model, trainer.role, directory / "adapters" / trainer.role)
        tensors = load_file(str(directory / "optimizer" / f"{trainer.role}.safetensors"))
        trainer.optimizer.load_state_dict(unflatten_optimizer_state(tensors, saved["optimizer"]))
        trainer.baseline.load_state_dict(saved["baseline"])
        trainer.beta.load_state_dict(saved["beta"])
        trainer.step = int(saved["step"])
    restore_rng_state(load_file(str(directory / RNG_FILE)), state["rng"])


def load_adapter_weights(model: PeftModel, role: str, adapter_dir: Path) -> None:
    """Copy saved LoRA weights into the existing adapter in place, so the optimizer's references
    to its parameters stay valid."""
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    current = model.peft_config[role]
    for key in ("r", "lora_alpha", "target_modules"):
        saved_value, current_value = config.get(key), _jsonable(getattr(current, key))
        if saved_value != current_value:
            raise ValueError(
                f"adapter {role!r}: saved {key}={saved_value!r} but the model has {current_value!r}"
            )
    weights = load_file(str(adapter_dir / ADAPTER_WEIGHTS))
    expected = set(get_peft_model_state_dict(model, adapter_name=role))
    if set(weights) != expected:
        raise ValueError(
            f"adapter {role!r} in {adapter_dir}: {len(set(weights) - expected)} unexpected and "
            f"{len(expected - set(weights))} missing tensors"
        )
    set_peft_model_state_dict(model, weights, adapter_name=role)


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state_dict as safetensors-ready tensors ("<param index>.<name>") plus a JSON
    structure holding the param groups and any non-tensor per-parameter values."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [_jsonable(group) for group in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], structure: dict) -> dict[str, Any]:
    per_param: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = tensor
    for index, values in structure["scalars"].items():
        per_param.setdefault(int(index), {}).update(values)
    groups = [
        {key: tuple(value) if key == "betas" else value for key, value in group.items()}
        for group in structure["param_groups"]
    ]
    return {"state": dict(sorted(per_param.items())), "param_groups": groups}


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, device_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = device_state
    version, mt_state, gauss_next = random.getstate()
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return tensors, {
        "python": [version, list(mt_state), gauss_next],
        "numpy": [name, keys.tolist(), position, has_gauss, cached_gaussian],
    }


def restore_rng_state(tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda_states = sorted(key for key in tensors if key.startswith("torch_cuda_"))
    if cuda_states and torch.cuda.is_available():
        # A machine with fewer GPUs restores the ones it has (device 0 is the one that trains).
        for key in cuda_states[: torch.cuda.device_count()]:
            torch.cuda.set_rng_state(tensors[key], device=int(key.rsplit("_", 1)[1]))
    version, mt_state, gauss_next = saved["python"]
    random.setstate((version, tuple(mt_state), gauss_next))
    name, keys, position, has_gauss, cached_gaussian = saved["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss,
                         cached_gaussian))


def _read_state(directory: Path) -> dict[str, Any]:
    path = directory / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no policy state in {directory} (missing {STATE_FILE})")
    state = json.loads(path.read_text())
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {state.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    return state


def _roles(trainers: Sequence[RoleTrainer]) -> list[str]:
    roles = [trainer.role for trainer in trainers]
    if not roles or len(set(roles)) != len(roles):
        raise ValueError(f"give one trainer per role, at least one; got roles {roles}")
    return roles


def _jsonable(value: Any) -> Any:
    """Tuples and sets as lists (sets sorted), recursively: what json.dumps would give back."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, set):
        return sorted(value)
    return value
