import math

import pytest
import torch

from ireasoner.config import KLConfig
from ireasoner.policy.kl import AdaptiveBeta, exact_token_kl, k3_token_kl, mean_over_response


def test_exact_kl_matches_hand_computation():
    policy = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])
    reference = torch.tensor([[0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    by_hand = [
        0.5 * math.log(2) + 0.25 * math.log(0.5),
        0.1 * math.log(0.3) + 0.8 * math.log(2.4) + 0.1 * math.log(0.3),
    ]
    kl = exact_token_kl(policy.log(), reference.log())
    torch.testing.assert_close(kl, torch.tensor(by_hand), rtol=0, atol=1e-6)


def test_exact_kl_is_zero_for_identical_distributions():
    logprobs = torch.log_softmax(torch.randn(2, 4, 7), dim=-1)
    assert torch.equal(exact_token_kl(logprobs, logprobs.clone()), torch.zeros(2, 4))


def test_exact_kl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        exact_token_kl(torch.zeros(2, 3), torch.zeros(2, 4))


def test_mean_over_response_ignores_masked_tokens():
    values = torch.tensor([[1.0, 2.0, 100.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    torch.testing.assert_close(mean_over_response(values, mask), torch.tensor([1.5, 4.0]))


def test_mean_over_response_refuses_a_rollout_without_response_tokens():
    with pytest.raises(ValueError, match="no response tokens"):
        mean_over_response(torch.ones(2, 2), torch.tensor([[True, False], [False, False]]))


def test_k3_is_non_negative():
    policy = torch.randn(1000)
    reference = torch.randn(1000)
    assert bool((k3_token_kl(policy, reference) >= 0).all())


def test_k3_matches_exact_kl_in_expectation_on_a_toy_distribution():
    generator = torch.Generator().manual_seed(0)
    policy = torch.log_softmax(torch.tensor([2.0, 0.5, -1.0, 0.0]), dim=-1)
    reference = torch.log_softmax(torch.tensor([0.0, 1.0, 0.0, -0.5]), dim=-1)
    samples = torch.multinomial(policy.exp(), 200_000, replacement=True, generator=generator)
    estimate = k3_token_kl(policy[samples], reference[samples]).mean()
    exact = exact_token_kl(policy, reference)
    assert abs(float(estimate) - float(exact)) < 0.01 * float(exact) + 1e-3


def make_beta(value: float = 1e-3) -> AdaptiveBeta:
    return AdaptiveBeta.from_config(KLConfig(beta_init=value, target=0.02, adapt_rate=0.1))


def test_beta_rises_when_kl_exceeds_target_and_falls_below_it():
    beta = make_beta()
    assert beta.update(0.05) > 1e-3
    beta = make_beta()
    assert beta.update(0.005) < 1e-3


def test_beta_follows_equation_8():
    beta = make_beta()
    assert beta.update(0.03) == pytest.approx(1e-3 * math.exp(0.1 * (0.03 - 0.02) / 0.02))


def test_beta_stays_inside_its_bounds():
    cfg = KLConfig(beta_init=1.0, beta_min=0.5, beta_max=2.0, adapt_rate=5.0)
    beta = AdaptiveBeta.from_config(cfg)
    for _ in range(20):
        beta.update(10.0)
    assert beta.value == 2.0
    for _ in range(20):
        beta.update(0.0)
    assert beta.value == 0.5


def test_fixed_beta_does_not_move():
    beta = AdaptiveBeta.from_config(KLConfig(beta_init=0.3, adaptive=False))
    assert beta.update(5.0) == 0.3


def test_beta_refuses_a_non_finite_kl():
    with pytest.raises(ValueError, match="finite"):
        make_beta().update(float("nan"))


def test_beta_state_round_trips_as_floats():
    beta = make_beta()
    beta.update(0.1)
    state = beta.state_dict()
    assert all(isinstance(value, float) for value in state.values())
    restored = make_beta()
    restored.load_state_dict(state)
    assert restored == beta
