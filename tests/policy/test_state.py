import copy
import random

import numpy as np
import pytest
import torch
from peft import PeftModel

from ireasoner.config import KLConfig, LoraConfig, OptimizationConfig, SolverConfig
from ireasoner.model.loading import Backbone
from ireasoner.policy.adapters import adapter_parameters, attach_adapters
from ireasoner.policy.state import (
    capture_rng_state,
    flatten_optimizer_state,
    load_policy_state,
    restore_rng_state,
    save_policy_state,
    unflatten_optimizer_state,
)
from ireasoner.policy.update import PolicyExample, RoleTrainer
from ireasoner.prompts import render, solver_text

LORA = LoraConfig(rank=4, alpha=8, dropout=0.1)  # dropout on: resuming must replay its masks
OPTIMIZATION = OptimizationConfig(lr=1e-2, micro_batch_size=2)


def build(backbone: Backbone, lora: LoraConfig = LORA, optimization=OPTIMIZATION):
    """A private copy of the tiny backbone with both adapters and their trainers."""
    model = attach_adapters(copy.deepcopy(backbone.model), lora)
    trainers = [RoleTrainer(model, backbone.processor, role, optimization, KLConfig())
                for role in ("solver", "proposer")]
    return model, trainers


def batch(processor, images, rewards) -> list[PolicyExample]:
    prompt = render(processor, solver_text(SolverConfig(), "Which bar is tallest?"))
    responses = ["<answer> red </answer>", "<think> Step 1: blue. </think><answer> b </answer>"]
    return [PolicyExample(images[i % len(images)], prompt, responses[i % 2], reward)
            for i, reward in enumerate(rewards)]


def snapshot(model, trainers):
    weights = {role: [p.detach().clone() for p in adapter_parameters(model, role)]
               for role in ("solver", "proposer")}
    moments = {}
    for trainer in trainers:
        state = trainer.optimizer.state_dict()["state"]
        moments[trainer.role] = [state[i][name].clone() for i in sorted(state)
                                 for name in ("step", "exp_avg", "exp_avg_sq")]
    return weights, moments


def assert_identical(left, right):
    for role in left:
        assert all(torch.equal(a, b) for a, b in zip(left[role], right[role], strict=True))


@pytest.mark.slow  # several forward and backward passes
@pytest.mark.parametrize("update", ["per_rollout", "batched"])
def test_resume_continues_exactly_like_the_uninterrupted_run(tiny_backbone, tiny_images,
                                                             tmp_path, update):
    optimization = OPTIMIZATION.model_copy(update={"update": update})
    model, trainers = build(tiny_backbone, optimization=optimization)
    solver, proposer = trainers
    processor = solver.processor
    solver.update(batch(processor, tiny_images, [1.0, 0.0, 0.5]))
    proposer.update(batch(processor, tiny_images, [0.2, 0.9]))
    save_policy_state(tmp_path / "state", model, trainers)
    continued = solver.update(batch(processor, tiny_images, [0.0, 1.0, 0.7]))
    expected = snapshot(model, trainers)

    model, trainers = build(tiny_backbone, optimization=optimization)
    load_policy_state(tmp_path / "state", model, trainers)
    resumed = trainers[0].update(batch(processor, tiny_images, [0.0, 1.0, 0.7]))

    assert (resumed.loss, resumed.kl, resumed.beta, resumed.baseline, resumed.step) == (
        continued.loss, continued.kl, continued.beta, continued.baseline, continued.step)
    assert resumed.examples == continued.examples  # every step's b, β, NLL, KL, grad norm
    assert resumed.step == (6 if update == "per_rollout" else 2)
    actual = snapshot(model, trainers)
    assert_identical(actual[0], expected[0])
    assert_identical(actual[1], expected[1])


def test_saved_adapters_load_with_peft(tiny_backbone, tiny_images, tmp_path):
    model, trainers = build(tiny_backbone)
    trainers[0].update(batch(trainers[0].processor, tiny_images, [1.0, 0.0]))
    save_policy_state(tmp_path / "state", model, trainers)
    fresh = copy.deepcopy(tiny_backbone.model)
    loaded = PeftModel.from_pretrained(fresh, tmp_path / "state" / "adapters" / "solver",
                                       adapter_name="solver")
    pairs = zip(adapter_parameters(loaded, "solver"), adapter_parameters(model, "solver"),
                strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_state_directory_holds_no_pickle_and_replaces_the_old_one(tiny_backbone, tiny_images,
                                                                  tmp_path):
    model, trainers = build(tiny_backbone)
    trainers[0].update(batch(trainers[0].processor, tiny_images, [1.0, 0.0]))
    save_policy_state(tmp_path / "state", model, trainers)
    save_policy_state(tmp_path / "state", model, trainers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
    suffixes = {p.suffix for p in (tmp_path / "state").rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".safetensors", ".md"}


def test_load_refuses_a_differently_shaped_adapter(tiny_backbone, tiny_images, tmp_path):
    model, trainers = build(tiny_backbone)
    save_policy_state(tmp_path / "state", model, trainers)
    model, trainers = build(tiny_backbone, LoraConfig(rank=8, alpha=8))
    with pytest.raises(ValueError, match="saved r=4"):
        load_policy_state(tmp_path / "state", model, trainers)


def test_load_refuses_other_roles(tiny_backbone, tmp_path):
    model, trainers = build(tiny_backbone)
    save_policy_state(tmp_path / "state", model, trainers[:1])
    with pytest.raises(ValueError, match="holds roles"):
        load_policy_state(tmp_path / "state", model, trainers)


def test_load_of_a_missing_state_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no policy state"):
        load_policy_state(tmp_path / "nowhere", None, [])


def test_rng_states_round_trip():
    tensors, saved = capture_rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(tensors, saved)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_optimizer_state_round_trips_through_tensors_and_json():
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    optimizer = torch.optim.AdamW(params, lr=0.1, weight_decay=0.01)
    sum(p.square().sum() for p in params).backward()
    optimizer.step()
    tensors, structure = flatten_optimizer_state(optimizer.state_dict())
    restored = unflatten_optimizer_state(tensors, structure)
    original = optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for index, values in original["state"].items():
        assert all(torch.equal(restored["state"][index][k], v) for k, v in values.items())
