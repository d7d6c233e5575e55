import copy
import hashlib

import pytest
import torch

from ireasoner.config import KLConfig, LoraConfig, OptimizationConfig, SolverConfig
from ireasoner.model.loading import Backbone
from ireasoner.policy.adapters import adapter_parameters, attach_adapters
from ireasoner.policy.logprobs import response_logprobs
from ireasoner.policy.update import EmaBaseline, PolicyExample, RoleTrainer
from ireasoner.prompts import render, solver_text

RESPONSES = [
    "<think> Step 1: there are three bars. </think><answer> 3 </answer>",
    "<think> Step 1: count. Step 2: the red bar is tallest. </think><answer> red </answer>",
    "<answer> 7 </answer>",
]
NO_KL = KLConfig(beta_init=0.0, adaptive=False)


@pytest.fixture
def policy(tiny_backbone: Backbone):
    """A private copy of the tiny backbone with both adapters: tests here train it."""
    model = attach_adapters(copy.deepcopy(tiny_backbone.model),
                            LoraConfig(rank=4, alpha=8, dropout=0.0))
    return model, tiny_backbone.processor


def make_examples(processor, images, rewards) -> list[PolicyExample]:
    prompt = render(processor, solver_text(SolverConfig(), "How many bars are there?"))
    return [
        PolicyExample(image=images[i % len(images)], prompt=prompt,
                      response=RESPONSES[i % len(RESPONSES)], reward=reward)
        for i, reward in enumerate(rewards)
    ]


def sequence_logprobs(model, processor, examples) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = response_logprobs(model, processor, [e.image for e in examples],
                                [e.prompt for e in examples], [e.response for e in examples],
                                micro_batch_size=4)
    return out.sequence_logprobs()


def make_trainer(model, processor, kl=NO_KL, role="solver", **optimization) -> RoleTrainer:
    settings = {"lr": 1e-3, "weight_decay": 0.0, **optimization}
    return RoleTrainer(model, processor, role, OptimizationConfig(**settings), kl)


def checksum(tensors) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize(("reward", "direction"), [(1.0, 1), (0.0, -1)])
def test_update_moves_log_prob_with_the_sign_of_the_advantage(policy, tiny_images, reward,
                                                             direction):
    model, processor = policy
    examples = make_examples(processor, tiny_images, [reward])
    trainer = make_trainer(model, processor)
    trainer.baseline.value = 0.5  # advantage = reward − 0.5
    before = sequence_logprobs(model, processor, examples)
    trainer.update(examples)
    after = sequence_logprobs(model, processor, examples)
    assert direction * float(after - before) > 0


def test_zero_advantage_without_kl_leaves_the_adapter_unchanged(policy, tiny_images):
    model, processor = policy
    trainer = make_trainer(model, processor)
    before = checksum(trainer.parameters)
    # The first batch's baseline is its own mean: equal rewards give zero advantages.
    stats = trainer.update(make_examples(processor, tiny_images, [0.4, 0.4, 0.4]))
    assert stats.advantage_mean == 0.0 and stats.grad_norm == 0.0
    assert checksum(trainer.parameters) == before


def test_update_changes_only_the_trained_adapter(policy, tiny_images):
    model, processor = policy
    trainer = make_trainer(model, processor, kl=KLConfig())
    base = [p for name, p in model.named_parameters() if "lora_" not in name]
    assert any("visual" in name for name, _ in model.named_parameters() if "lora_" not in name)
    base_before = checksum(base)
    proposer_before = checksum(adapter_parameters(model, "proposer"))
    solver_before = checksum(trainer.parameters)
    trainer.update(make_examples(processor, tiny_images, [1.0, 0.0, 0.5]))
    assert checksum(base) == base_before
    assert checksum(adapter_parameters(model, "proposer")) == proposer_before
    assert checksum(trainer.parameters) != solver_before


@pytest.mark.parametrize("estimator", ["exact", "k3"])
def test_kl_is_zero_at_initialisation(policy, tiny_images, estimator):
    model, processor = policy
    trainer = make_trainer(model, processor, kl=KLConfig(estimator=estimator))
    assert trainer.update(make_examples(processor, tiny_images, [1.0, 0.0])).kl == 0.0


def test_disabled_adapters_reproduce_the_base_model_exactly(policy, tiny_images, tiny_backbone):
    model, processor = policy
    examples = make_examples(processor, tiny_images, [1.0, 0.0, 0.3])
    make_trainer(model, processor, lr=1e-2).update(examples)
    base = sequence_logprobs(tiny_backbone.model, processor, examples)
    with model.disable_adapter():
        reference = sequence_logprobs(model, processor, examples)
    assert torch.equal(reference, base)
    assert not torch.equal(sequence_logprobs(model, processor, examples), base)


def test_kl_is_positive_once_the_adapter_has_moved(policy, tiny_images):
    model, processor = policy
    examples = make_examples(processor, tiny_images, [1.0, 0.0, 0.3])
    trainer = make_trainer(model, processor, kl=KLConfig(), lr=1e-2)
    trainer.update(examples)
    assert trainer.update(examples).kl > 0


@pytest.mark.slow  # several forward and backward passes
def test_micro_batches_accumulate_the_one_batch_gradient(policy, tiny_images):
    model, processor = policy
    with torch.no_grad():  # LoRA B starts at 0, which would leave every A gradient at 0
        for name, param in model.named_parameters():
            if "lora_B.solver" in name:
                param.normal_(std=0.1)
    examples = make_examples(processor, tiny_images, [1.0, 0.0, 0.3])
    advantages = torch.tensor([0.5, -0.5, -0.2])
    gradients = []
    for micro_batch_size in (3, 2):  # one pass, then uneven micro-batches of 2 and 1
        trainer = make_trainer(model, processor, kl=KLConfig(), micro_batch_size=micro_batch_size)
        trainer.accumulate_gradients(examples, advantages, beta=0.5)
        gradients.append(torch.cat([p.grad.flatten() for p in trainer.parameters]))
    assert gradients[0].abs().max() > 1e-3
    # Padding to another width changes float summation order: close, not bitwise.
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-4, atol=1e-6)


def test_update_reports_its_batch_and_adapts_beta(policy, tiny_images):
    model, processor = policy
    trainer = make_trainer(model, processor, kl=KLConfig(), baseline_momentum=0.5)
    stats = trainer.update(make_examples(processor, tiny_images, [1.0, 0.0, 0.5]))
    assert (stats.step, stats.num_examples, stats.num_skipped) == (1, 3, 0)
    assert stats.baseline == pytest.approx(0.5) and stats.advantage_mean == pytest.approx(0.0)
    assert stats.num_tokens > 0 and stats.seconds > 0
    # KL is 0 < τ at the first step, so β relaxes.
    assert stats.next_beta < stats.beta and trainer.beta.value == stats.next_beta
    assert stats.loss == pytest.approx(stats.pg_loss + stats.beta * stats.kl)


def test_empty_responses_are_skipped_and_counted(policy, tiny_images):
    model, processor = policy
    examples = make_examples(processor, tiny_images, [1.0, 0.0])
    empty = PolicyExample(image=tiny_images[0], prompt=examples[0].prompt, response="", reward=1.0)
    stats = make_trainer(model, processor).update([*examples, empty])
    assert (stats.num_examples, stats.num_skipped) == (2, 1)


def test_update_refuses_a_non_finite_reward(policy, tiny_images):
    model, processor = policy
    with pytest.raises(ValueError, match="finite"):
        make_trainer(model, processor).update(make_examples(processor, tiny_images,
                                                            [1.0, float("nan")]))


def test_update_refuses_an_empty_batch(policy):
    model, processor = policy
    with pytest.raises(ValueError, match="at least one example"):
        make_trainer(model, processor).update([])


def test_trainer_restores_the_active_adapter(policy, tiny_images):
    model, processor = policy
    make_trainer(model, processor, role="proposer").update(
        make_examples(processor, tiny_images, [1.0, 0.0]))
    assert model.active_adapter == "solver"


def test_first_baseline_is_the_first_batch_mean():
    baseline = EmaBaseline(momentum=0.9)
    rewards = torch.tensor([0.2, 0.6])
    assert baseline.current(rewards) == pytest.approx(0.4)
    assert baseline.update(rewards) == pytest.approx(0.4)


def test_advantages_use_the_baseline_from_before_the_batch():
    baseline = EmaBaseline(momentum=0.9, value=0.5)
    rewards = torch.tensor([1.0, 1.0])
    assert baseline.current(rewards) == 0.5
    assert baseline.update(rewards) == pytest.approx(0.9 * 0.5 + 0.1 * 1.0)
