"""GRPO pieces (spec §6): advantages, clipped surrogate, shaping, and the trainer on the tiny
model."""

import pytest
import torch

from ireasoner.config import IVRConfig, KLConfig, OptimizationConfig
from ireasoner.policy.grpo import (
    GRPOExample,
    GRPOTrainer,
    clipped_surrogate,
    group_advantages,
    shaped_probability,
)
from ireasoner.policy.state import load_policy_state, save_policy_state
from ireasoner.prompts import render


def test_group_advantages_are_normalised_by_the_population_std():
    # mean 0.5, population std 0.5
    advantages = group_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0]), epsilon=0.0)
    assert advantages.tolist() == [1.0, -1.0, 1.0, -1.0]


def test_equal_rewards_give_zero_advantages_not_nan():
    assert group_advantages(torch.tensor([0.3, 0.3, 0.3]), 1e-6).tolist() == [0.0, 0.0, 0.0]


def test_clipped_surrogate_takes_the_pessimistic_side_of_the_clip():
    old = torch.zeros(4)
    ratios = torch.tensor([1.5, 1.5, 0.5, 0.5])
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    out = clipped_surrogate(ratios.log(), old, advantages, clip_epsilon=0.2)
    # A > 0: min(1.5, 1.2) = 1.2; A < 0: min(-1.5, -1.2) = -1.5; A > 0: min(0.5, 0.8) = 0.5;
    # A < 0: min(-0.5, -0.8) = -0.8
    assert out.tolist() == pytest.approx([1.2, -1.5, 0.5, -0.8])


def test_shaped_probability_and_its_gradient_match_the_formula():
    probability = torch.tensor([0.01, 0.5, 0.9], requires_grad=True)
    gamma = 0.1
    shaped = shaped_probability(probability.log(), gamma)
    assert shaped.tolist() == pytest.approx([0.01 / 0.11, 0.5 / 0.6, 0.9 / 1.0])
    shaped.sum().backward()
    expected = [gamma / (p + gamma) ** 2 for p in (0.01, 0.5, 0.9)]
    assert probability.grad.tolist() == pytest.approx(expected, rel=1e-5)
    assert probability.grad[0] > probability.grad[2]  # rare tokens get more gradient


def test_shaping_gamma_must_be_positive():
    with pytest.raises(ValueError, match="gamma"):
        shaped_probability(torch.zeros(2), 0.0)


def _examples(backbone, images):
    prompt = render(backbone.processor, "How many bars?")
    return [
        GRPOExample(images[0], prompt, [151, 152, 153], advantage=1.0, off_policy=False),
        GRPOExample(images[0], prompt, [154, 155], advantage=-1.0, off_policy=False),
        GRPOExample(images[0], prompt, [156, 157, 158, 159], advantage=0.5, off_policy=True),
        GRPOExample(images[0], prompt, [], advantage=0.0, off_policy=False),
    ]


def _trainer(model, processor):
    return GRPOTrainer(model, processor, "solver", OptimizationConfig(lr=1e-3, micro_batch_size=2),
                       KLConfig(estimator="k3"), IVRConfig())


def test_a_grpo_step_moves_only_the_solver_adapter_and_counts_shaped_tokens(
        tiny_lora_model, tiny_backbone, tiny_images):
    trainer = _trainer(tiny_lora_model, tiny_backbone.processor)
    solver = [p.detach().clone() for p in trainer.parameters]
    proposer = [p.detach().clone() for n, p in tiny_lora_model.named_parameters()
                if ".proposer." in n]
    stats = trainer.update(_examples(tiny_backbone, tiny_images))
    assert stats.step == 1 and stats.num_skipped == 1 and stats.num_off_policy == 1
    assert (stats.num_tokens, stats.off_policy_tokens) == (9, 4)
    assert stats.shaped_token_share == pytest.approx(4 / 9)
    assert any(not torch.equal(a, b) for a, b in zip(solver, trainer.parameters, strict=True))
    after = [p for n, p in tiny_lora_model.named_parameters() if ".proposer." in n]
    assert all(torch.equal(a, b) for a, b in zip(proposer, after, strict=True))


def test_an_update_without_on_policy_rollouts_is_refused(tiny_lora_model, tiny_backbone,
                                                         tiny_images):
    trainer = _trainer(tiny_lora_model, tiny_backbone.processor)
    with pytest.raises(ValueError, match="on-policy"):
        trainer.update(_examples(tiny_backbone, tiny_images)[2:])


def test_grpo_trainer_state_saves_and_restores_with_policy_state(
        tiny_lora_model, tiny_backbone, tiny_images, tmp_path):
    trainer = _trainer(tiny_lora_model, tiny_backbone.processor)
    trainer.update(_examples(tiny_backbone, tiny_images))
    save_policy_state(tmp_path / "state", tiny_lora_model, [trainer])
    fresh = _trainer(tiny_lora_model, tiny_backbone.processor)
    load_policy_state(tmp_path / "state", tiny_lora_model, [fresh])
    assert fresh.step == 1 and fresh.beta.value == trainer.beta.value
    assert fresh.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()
