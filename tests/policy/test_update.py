import copy
import hashlib
import math

import pytest
import torch

from ireasoner.config import KLConfig, LoraConfig, OptimizationConfig, SolverConfig
from ireasoner.model.loading import Backbone
from ireasoner.policy.adapters import adapter_parameters, attach_adapters, use_adapter
from ireasoner.policy.batch import iter_micro_batches
from ireasoner.policy.kl import exact_token_kl
from ireasoner.policy.logprobs import TokenLogprobs, forward_logprobs, response_logprobs
from ireasoner.policy.update import EmaBaseline, PolicyExample, RoleTrainer, reduced_logprobs
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
    trainer = make_trainer(model, processor, update="batched")
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
    # The first step's KL, before any step moved the adapter.
    assert trainer.update(make_examples(processor, tiny_images, [1.0, 0.0])).examples[0].kl == 0.0


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
    trainer = make_trainer(model, processor, kl=KLConfig(), baseline_momentum=0.5,
                           update="batched")
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
    assert baseline.current(0.4) == pytest.approx(0.4)
    assert baseline.update(0.4) == pytest.approx(0.4)


def test_advantages_use_the_baseline_from_before_the_batch():
    baseline = EmaBaseline(momentum=0.9, value=0.5)
    assert baseline.current(1.0) == 0.5
    assert baseline.update(1.0) == pytest.approx(0.9 * 0.5 + 0.1 * 1.0)


def test_baselines_start_at_zero_per_rollout_and_at_the_first_mean_batched(policy):
    model, processor = policy
    assert make_trainer(model, processor).baseline.value == 0.0
    assert make_trainer(model, processor, update="batched").baseline.value is None


def test_token_mean_and_sum_on_a_hand_sized_case():
    policy = TokenLogprobs(logprobs=torch.tensor([[-1.0, -2.0, -3.0], [-4.0, 0.0, 0.0]]),
                           mask=torch.tensor([[True, True, True], [True, False, False]]))
    assert reduced_logprobs(policy, "sum").tolist() == [-6.0, -4.0]
    assert reduced_logprobs(policy, "mean").tolist() == [-2.0, -4.0]


def reference_per_rollout(model, processor, examples, kl: KLConfig, reduction: str,
                          lr: float, momentum: float = 0.9):
    """Spec §4's published update written out: per rollout, zero grads -> loss_i = (r_i - b)
    NLL_i + β KL_i -> backward -> clip 1.0 -> AdamW -> β (Eq. 8) -> b (EMA from 0)."""
    params = list(adapter_parameters(model, "solver"))
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    b, beta = 0.0, kl.beta_init
    use_adapter(model, "solver")
    for example in examples:
        optimizer.zero_grad()
        batch = next(iter_micro_batches(processor, [example.image], [example.prompt],
                                        [example.response], 1))
        model.eval()
        with model.disable_adapter(), torch.no_grad():
            reference = forward_logprobs(model, batch, full=True)
        model.train()
        current = forward_logprobs(model, batch, full=True)
        tokens = current.mask.sum()
        logprob = (current.logprobs * current.mask).sum()
        nll = -logprob / tokens if reduction == "mean" else -logprob
        kl_i = (exact_token_kl(current.full, reference.full) * current.mask).sum() / tokens
        ((example.reward - b) * nll + beta * kl_i).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        beta = min(max(beta * math.exp(kl.adapt_rate * (float(kl_i.detach()) - kl.target) / kl.target),
                       kl.beta_min), kl.beta_max)
        b = momentum * b + (1 - momentum) * example.reward
    return b, beta, params


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_per_rollout_update_equals_the_reference_loop(policy, tiny_images, reduction):
    model, processor = policy
    with torch.no_grad():  # LoRA B starts at 0: give the adapter a direction to move from
        generator = torch.Generator().manual_seed(0)
        for name, param in model.named_parameters():
            if "lora_B.solver" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    twin = copy.deepcopy(model)
    examples = make_examples(processor, tiny_images, [1.0, 0.2, 0.7])
    kl = KLConfig(beta_init=0.05, target=0.001)
    trainer = make_trainer(model, processor, kl=kl, lr=1e-2, token_reduction=reduction)
    stats = trainer.update(examples)
    b, beta, params = reference_per_rollout(twin, processor, examples, kl, reduction, lr=1e-2)
    assert stats.num_steps == 3 and trainer.step == 3
    assert [u.step for u in stats.examples] == [1, 2, 3]
    # b before each rollout: 0, then 0.1·r_1, then the EMA of both.
    assert [u.baseline for u in stats.examples] == pytest.approx([0.0, 0.1, 0.1 * 0.9 + 0.02])
    assert trainer.baseline.value == pytest.approx(b)
    assert trainer.beta.value == pytest.approx(beta, rel=1e-5)
    assert stats.examples[2].kl > 0  # the later steps saw a moved adapter
    for mine, theirs in zip(trainer.parameters, params, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7)
