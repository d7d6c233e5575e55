"""Every ablation of the paper's Tables 2 and 3 is a RewardConfig, and each changes exactly
the term it names."""

import numpy as np
import pytest

from ireasoner.rewards import RewardConfig, lambda_at, score_group

RNG = np.random.default_rng(7)
# Three rollouts agree on "a" (10 steps each, so J_max matters), one says "b", one is unparsable.
GROUP = (["a", "a", "a", "b", None],
         [RNG.normal(size=(10, 6)).astype(np.float32) + 1.0 for _ in range(5)],
         [20, 100, 200, 30, 10])
FULL = RewardConfig()
LATE, EARLY = 2500, 0  # iterations of a 2500-iteration run


def scores(config=FULL, iteration=LATE):
    return score_group(*GROUP, lambda_at(iteration, config, 2500), config)


def test_soft_majority_only_is_the_answer_reward():
    result = scores(RewardConfig(lambda_mode="answer_only"))
    np.testing.assert_allclose(result.solver, result.answer)
    assert result.lam == 0.0


def test_step_reward_only_is_the_step_reward():
    result = scores(RewardConfig(lambda_mode="step_only"), EARLY)
    np.testing.assert_allclose(result.solver, result.step)
    assert result.step[:3].min() > 0


def test_discrete_reward_is_dominant_group_membership_and_keeps_the_step_term():
    discrete = scores(RewardConfig(mode="discrete"))
    assert discrete.answer.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    np.testing.assert_allclose(discrete.step, scores().step)
    discrete_only = scores(RewardConfig(mode="discrete", lambda_mode="answer_only"))
    np.testing.assert_allclose(discrete_only.solver, discrete.answer)


def test_without_warmup_lambda_is_lambda_max_from_the_start():
    config = RewardConfig(warmup_fraction=0, ramp_fraction=0)
    assert scores(config, EARLY).lam == pytest.approx(0.7)
    assert scores(FULL, EARLY).lam == 0.0


def test_without_position_decay_every_valid_position_weighs_the_same():
    result = scores(RewardConfig(position_decay=0.0))
    expected = result.density * np.nanmean(result.step_similarity[:3], axis=1)
    np.testing.assert_allclose(result.step[:3], expected)
    assert not np.allclose(scores().step[:3], expected)


def test_without_density_weighting_rho_is_one():
    plain = scores(RewardConfig(use_density=False))
    assert plain.density == 1.0
    np.testing.assert_allclose(plain.step, scores().step / scores().density)


def test_without_length_penalty_long_answers_are_not_penalised():
    no_penalty = scores(RewardConfig(length_penalty=0.0))
    np.testing.assert_allclose(no_penalty.answer[:3], [(3 / 5) ** 0.7] * 3)
    assert scores().answer[2] < no_penalty.answer[2]  # 200 words: penalised by default
    assert scores().answer[0] == no_penalty.answer[0]  # 20 words: within budget


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_soft_majority_exponent_shapes_the_answer_reward(alpha):
    result = scores(RewardConfig(alpha=alpha, length_penalty=0.0))
    np.testing.assert_allclose(result.answer[:4], [0.6**alpha] * 3 + [0.2**alpha])


@pytest.mark.parametrize("max_steps", [4, 6, 8, 10])
def test_step_budget_sets_how_many_positions_are_compared(max_steps):
    result = scores(RewardConfig(max_steps=max_steps))
    assert result.step_similarity.shape == (5, max_steps)
    assert result.valid_positions == max_steps  # all three group rollouts have 10 steps
    assert result.mean_steps == max_steps


def test_every_ablation_changes_the_solver_reward():
    ablations = [
        RewardConfig(lambda_mode="answer_only"), RewardConfig(lambda_mode="step_only"),
        RewardConfig(mode="discrete"), RewardConfig(position_decay=0.0),
        RewardConfig(use_density=False), RewardConfig(length_penalty=0.0),
        RewardConfig(alpha=0.5), RewardConfig(alpha=1.0), RewardConfig(max_steps=4),
    ]
    full = scores().solver
    for config in ablations:
        assert not np.allclose(scores(config).solver, full), config
