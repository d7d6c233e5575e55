"""Hand-computed cases for Eq. 1-6 and g(H) (spec §2-3), the arithmetic written out."""

import math

import numpy as np
import pytest

from ireasoner.rewards import RewardConfig, lambda_at, proposer_reward, score_group

DEFAULT = RewardConfig()
LATE = 0.7  # λ past warmup and ramp: λ_max


def rows(*vectors):
    return np.array(vectors, dtype=np.float32).reshape(len(vectors), -1)


NO_STEPS = np.zeros((0, 2), dtype=np.float32)


def flat_group(answers, lengths=None):
    """Rollouts whose steps all agree, so only the answer terms vary."""
    return answers, [rows([1, 0]) for _ in answers], lengths or [0] * len(answers)


def test_eq1_answer_distribution_counts_invalid_answers_in_n_only():
    scores = score_group(*flat_group(["a", "a", "b", None, "a"]), LATE, DEFAULT)
    p_a, p_b = 3 / 5, 1 / 5  # None counts in N = 5, not in the support
    assert scores.entropy == pytest.approx(-(p_a * math.log(p_a) + p_b * math.log(p_b)))
    # g uses H_p, where the unparsable answer is a singleton of its own (spec §3).
    h_p = scores.entropy + math.log(5) / 5
    assert scores.proposer == pytest.approx(math.exp(-((h_p - 0.90) ** 2) / (2 * 0.35**2)))


def test_eq2_dominant_group_and_density():
    scores = score_group(*flat_group(["a", "b", "a", None]), LATE, DEFAULT)
    assert scores.dominant_answer == "a"
    assert scores.in_group.tolist() == [True, False, True, False]
    assert scores.group_fraction == pytest.approx(2 / 4)
    assert scores.density == pytest.approx((2 / 4) ** 0.7)


@pytest.mark.parametrize(("answers", "dominant"), [
    (["b", "a", "a", "b"], "b"),  # tie 2-2: b's first rollout (0) comes before a's (1)
    ([None, "x", "a", "a", "x"], "x"),
    (["p", "q", "r"], "p"),  # three-way tie of singletons
])
def test_eq2_ties_go_to_the_answer_whose_first_rollout_comes_first(answers, dominant):
    assert score_group(*flat_group(answers), LATE, DEFAULT).dominant_answer == dominant


def test_eq5_continuous_answer_reward_with_length_penalty():
    answers, embeddings, _ = flat_group(["a", "a", "b", None, "a"])
    scores = score_group(answers, embeddings, [10, 70, 5, 0, 140], LATE, DEFAULT)
    alpha, eta, budget = 0.7, 0.05, 64
    expected = [
        0.6**alpha * 1.0,  # 10 words: within budget
        0.6**alpha * (1 - eta * (70 - budget) / budget),  # 6 words over: 0.09375 of budget
        0.2**alpha * 1.0,
        0.0,  # no answer
        0.6**alpha * (1 - eta * 1.0),  # 140 words: overrun clipped at 1
    ]
    np.testing.assert_allclose(scores.answer, expected, rtol=1e-12)


def test_eq5_discrete_answer_reward_is_membership_of_the_dominant_group():
    config = RewardConfig(mode="discrete")
    scores = score_group(*flat_group(["a", "b", "a", None], [500] * 4), LATE, config)
    assert scores.answer.tolist() == [1.0, 0.0, 1.0, 0.0]


def three_agreeing_rollouts_and_one_outlier():
    """G = {0, 1, 2} (answer a), rollout 3 answers b. Unnormalised rows on purpose.
    Position 1: e01 = [1,0], e11 = [2,0] -> [1,0], e21 = [0,1].
    Position 2: e02 = [0,1], e12 = [3,0] -> [1,0]; rollout 2 has one step."""
    return (["a", "a", "a", "b"],
            [rows([1, 0], [0, 1]), rows([2, 0], [3, 0]), rows([0, 1]), rows([-1, 0], [0, -1])],
            [0, 0, 0, 0])


def test_eq3_eq4_step_agreement_by_hand():
    scores = score_group(*three_agreeing_rollouts_and_one_outlier(), LATE, DEFAULT)
    # Position 1: S = [1,0] + [1,0] + [0,1] = [2,1], |S| = sqrt(5).
    c01 = c11 = 2 / math.sqrt(5)
    c21 = 1 / math.sqrt(5)
    # Position 2: G_2 = {0, 1}: S = [0,1] + [1,0], |S| = sqrt(2).
    c02 = c12 = 1 / math.sqrt(2)
    unit = lambda c: (c + 1) / 2  # noqa: E731
    w1, w2 = 1.0, math.exp(-0.15)
    rho = (3 / 4) ** 0.7
    r0 = (w1 * unit(c01) + w2 * unit(c02)) / (w1 + w2)
    r1 = (w1 * unit(c11) + w2 * unit(c12)) / (w1 + w2)
    r2 = unit(c21)  # one valid position: its weight normalises to 1
    np.testing.assert_allclose(scores.step, [rho * r0, rho * r1, rho * r2, 0.0], rtol=1e-6)
    assert scores.valid_positions == 2
    np.testing.assert_allclose(scores.step_similarity[:, :2],
                               [[unit(c01), unit(c02)], [unit(c11), unit(c12)],
                                [unit(c21), np.nan], [np.nan, np.nan]], rtol=1e-6)
    assert np.isnan(scores.step_similarity[:, 2:]).all()
    assert scores.mean_step_similarity == pytest.approx(
        np.mean([unit(c01), unit(c02), unit(c11), unit(c12), unit(c21)]), rel=1e-6)
    assert scores.mean_steps == pytest.approx((2 + 2 + 1 + 2) / 4)


def test_leave_one_out_similarity_and_disagreement_by_hand():
    scores = score_group(*three_agreeing_rollouts_and_one_outlier(), LATE, DEFAULT)
    # Position 1: others of 0 are [1,0]+[0,1] -> cos 1/sqrt(2); of 1 the same;
    # of 2 they are [1,0]+[1,0] -> cos([0,1],[2,0]) = 0.
    # Position 2: the other of 0 is [1,0] -> cos([0,1],[1,0]) = 0; of 1 it is [0,1] -> 0.
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(scores.loo_similarity[:, :2],
                               [[s, 0], [s, 0], [0, np.nan], [np.nan, np.nan]], atol=1e-6)
    np.testing.assert_allclose(scores.disagreement[:2], [1 - (s + s + 0) / 3, 1 - 0], atol=1e-6)
    assert np.isnan(scores.disagreement[2:]).all()


def test_eq6_mixing_with_the_schedule():
    group = three_agreeing_rollouts_and_one_outlier()
    for iteration, lam in [(0, 0.0), (750, 0.0), (1000, 0.7 * 250 / 1750), (2500, 0.7),
                           (9999, 0.7)]:
        assert lambda_at(iteration, DEFAULT, 2500) == pytest.approx(lam)
        scores = score_group(*group, lambda_at(iteration, DEFAULT, 2500), DEFAULT)
        assert scores.lam == pytest.approx(lam)
        np.testing.assert_allclose(scores.solver, (1 - lam) * scores.answer + lam * scores.step)


def test_lambda_schedule_modes():
    assert lambda_at(10_000, RewardConfig(lambda_mode="answer_only"), 2500) == 0.0
    assert lambda_at(0, RewardConfig(lambda_mode="step_only"), 2500) == 1.0
    no_warmup = RewardConfig(warmup_fraction=0, ramp_fraction=0)
    assert lambda_at(0, no_warmup, 2500) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="iteration"):
        lambda_at(-1, DEFAULT, 2500)


@pytest.mark.parametrize("iterations", [1, 7, 10, 100, 2500])
def test_lambda_fractions_reach_lambda_max_exactly_at_the_end_of_any_run(iterations):
    warm, ramp = DEFAULT.lambda_span(iterations)
    assert warm + ramp == iterations
    assert lambda_at(warm, DEFAULT, iterations) == 0.0  # t <= T_warm: answers only
    assert lambda_at(iterations, DEFAULT, iterations) == pytest.approx(0.7)
    if ramp > 1:
        assert 0.0 < lambda_at(warm + 1, DEFAULT, iterations) < 0.7


def test_lambda_span_boundaries_and_absolute_counts_winning():
    assert RewardConfig().lambda_span(2500) == (750, 1750)
    assert RewardConfig(warmup_fraction=0, ramp_fraction=1).lambda_span(10) == (0, 10)
    assert RewardConfig(warmup_fraction=1, ramp_fraction=0).lambda_span(10) == (10, 0)
    assert lambda_at(10, RewardConfig(warmup_fraction=1, ramp_fraction=0), 10) == 0.7
    assert lambda_at(9, RewardConfig(warmup_fraction=1, ramp_fraction=0), 10) == 0.0
    absolute = RewardConfig(warmup_iterations=2, ramp_iterations=4)
    assert absolute.lambda_span(2500) == (2, 4)
    assert lambda_at(6, absolute, 2500) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="warmup_fraction"):
        RewardConfig(warmup_fraction=0.5, ramp_fraction=0.6)


N5 = [np.zeros((0, 2), dtype=np.float32)] * 5


@pytest.mark.parametrize(("answers", "h_p"), [
    (["a"] * 5, 0.0),                                   # all agree
    (["a", "b", "c", "d", "e"], math.log(5)),           # all distinct
    ([None, None, "a", "b", "c"], math.log(5)),         # 2 unparsable + 3 distinct
    ([None] * 5, math.log(5)),                          # all unparsable
])
def test_proposer_reward_counts_unparsable_answers_as_singletons(answers, h_p):
    scores = score_group(answers, N5, [0] * 5, 0.0, DEFAULT)
    assert scores.proposer == pytest.approx(proposer_reward(h_p, DEFAULT))
    valid = [a for a in answers if a is not None]
    h = -sum(valid.count(a) / 5 * math.log(valid.count(a) / 5) for a in set(valid))
    assert scores.entropy == pytest.approx(h)  # the diagnostic H is unchanged


def test_format_breaking_question_no_longer_scores_near_the_top_of_g():
    answers = [None, None, "a", "b", "c"]
    singleton = score_group(answers, N5, [0] * 5, 0.0, DEFAULT).proposer
    excluded = score_group(answers, N5, [0] * 5, 0.0,
                           RewardConfig(proposer_unparsable="excluded")).proposer
    assert excluded == pytest.approx(0.98, abs=0.01)  # H = 0.97: near the top of g
    assert singleton == pytest.approx(proposer_reward(math.log(5), DEFAULT))
    assert singleton < 0.2


def test_proposer_reward_gaussian_bump():
    assert proposer_reward(0.9, DEFAULT) == pytest.approx(1.0)
    assert proposer_reward(0.9 + 0.35, DEFAULT) == pytest.approx(math.exp(-0.5))
    assert proposer_reward(0.0, DEFAULT) == pytest.approx(math.exp(-(0.9**2) / (2 * 0.35**2)))
    np.testing.assert_allclose(proposer_reward(np.array([0.55, 1.25]), DEFAULT),
                               [math.exp(-0.5)] * 2)


def test_all_answers_invalid_gives_zero_entropy_singleton_g_and_zero_rewards():
    scores = score_group([None] * 3, [rows([1, 0])] * 3, [5, 5, 5], LATE, DEFAULT)
    assert scores.entropy == 0.0
    # H_p: three singletons, log 3 (spec §3); H = 0 only with proposer_unparsable: excluded.
    assert scores.proposer == pytest.approx(proposer_reward(math.log(3), DEFAULT))
    assert scores.dominant_answer is None
    assert not scores.in_group.any()
    assert scores.answer.tolist() == scores.step.tolist() == scores.solver.tolist() == [0.0] * 3
    assert scores.group_fraction == 0.0 and scores.valid_positions == 0


def test_a_single_rollout_has_no_valid_step_position():
    scores = score_group(["a"], [rows([1, 0], [0, 1])], [3], LATE, DEFAULT)
    assert scores.answer.tolist() == [1.0]  # p = 1, no length penalty
    assert scores.step.tolist() == [0.0] and scores.valid_positions == 0
    assert np.isnan(scores.loo_similarity).all()  # nobody else to compare with
    alone = score_group(["a"], [rows([1, 0], [0, 1])], [3], LATE,
                        RewardConfig(min_group_for_step=1))
    assert alone.step.tolist() == [1.0]  # cos(e, e) = 1 -> (1 + 1) / 2, ρ = 1


def test_a_dominant_group_of_one_gets_no_step_reward():
    scores = score_group(["a", "b", "c"], [rows([1, 0])] * 3, [0, 0, 0], LATE, DEFAULT)
    assert scores.dominant_answer == "a" and scores.in_group.tolist() == [True, False, False]
    assert scores.answer[0] == pytest.approx((1 / 3) ** 0.7)
    assert scores.step.tolist() == [0.0, 0.0, 0.0]


def test_steps_beyond_max_steps_are_ignored():
    config = RewardConfig(max_steps=1)
    long = [rows([1, 0], [0, 1], [1, 1]), rows([1, 0], [1, 0], [-1, 0])]
    scores = score_group(["a", "a"], long, [0, 0], LATE, config)
    assert scores.step_similarity.shape == (2, 1)
    assert scores.step.tolist() == pytest.approx([1.0, 1.0])  # position 1 agrees exactly
    assert scores.mean_steps == 1.0


def test_rollouts_with_zero_steps_stay_in_the_group_without_step_reward():
    scores = score_group(["a", "a", "a"], [rows([1, 0]), rows([1, 0]), NO_STEPS], [0] * 3,
                         LATE, DEFAULT)
    assert scores.in_group.all()
    assert scores.step[2] == 0.0
    assert scores.step[0] == pytest.approx(1.0)  # |G_1| = 2, both identical, ρ = 1


def test_zero_and_nan_embeddings_are_steps_with_similarity_zero():
    group = (["a"] * 4,
             [rows([1, 0]), rows([1, 0]), rows([0, 0]), rows([np.nan, 1])], [0] * 4)
    scores = score_group(*group, LATE, DEFAULT)
    # S = [1,0] + [1,0] (the degenerate rows add nothing); |G_1| = 4 all count.
    np.testing.assert_allclose(scores.step_similarity[:, 0], [1.0, 1.0, 0.5, 0.5])
    assert np.isfinite(scores.step).all() and np.isfinite(scores.solver).all()
    assert scores.step[2] == pytest.approx(0.5)  # c = 0 -> (0 + 1) / 2, ρ = 1
    assert np.isfinite(scores.loo_similarity[:, 0]).all()


def test_rows_of_any_finite_length_keep_their_direction():
    # |[0, 1.4e-21]|² = 2e-42 is float32-subnormal (few digits), |[0, 1e-30]|² underflows
    # float32 to 0 and |[0, 1e30]|² overflows it: each still points along [0, 1], as scaling a
    # row changes nothing. Only the zero row is degenerate (similarity 0).
    group = (["a"] * 5, [rows([0, 1]), rows([0, 1.4179681e-21]), rows([0, 1e-30]),
                         rows([0, 1e30]), rows([0, 0])], [0] * 5)
    scores = score_group(*group, LATE, DEFAULT)
    # S = 4 [0, 1]: c = 1 for the four, 0 for the zero row -> (c + 1) / 2 = 1 and 0.5;
    # S_ij = cos(e_i, S - e_i) = 1 for the four, 0 for the zero row.
    np.testing.assert_allclose(scores.step_similarity[:, 0], [1, 1, 1, 1, 0.5], rtol=1e-7)
    np.testing.assert_allclose(scores.loo_similarity[:, 0], [1, 1, 1, 1, 0], rtol=1e-7)


def test_leave_one_out_sums_that_nearly_cancel_keep_their_digits():
    # For rollout 0, S - ê_0 = ê_1 + ê_2 ≈ [0.0014, 0.053]: the two unit vectors almost cancel,
    # so |S - ê_0|² = 2 + 2 cos(e_1, e_2) ≈ 0.0028 loses digits in float32 Gram arithmetic.
    e = rows([0.0, 1.0], [-0.5884594, 0.03125], [0.625, 0.0])
    scores = score_group(["a"] * 3, [e[i : i + 1] for i in range(3)], [0] * 3, LATE, DEFAULT)
    units = e.astype(np.float64) / np.linalg.norm(e.astype(np.float64), axis=1, keepdims=True)
    rest = units[1] + units[2]
    expected = units[0] @ rest / np.linalg.norm(rest)  # 0.99964817...
    assert scores.loo_similarity[0, 0] == pytest.approx(expected, rel=1e-7)


def test_signed_similarity_range_uses_the_cosine_itself():
    config = RewardConfig(similarity_range="signed", use_density=False)
    group = (["a", "a"], [rows([1, 0]), rows([-1, 0])], [0, 0])
    scores = score_group(*group, LATE, config)
    # S = [0, 0]: the prototype has no direction -> c = 0 for both.
    assert scores.step.tolist() == [0.0, 0.0]
    group = (["a", "a", "a"], [rows([1, 0]), rows([1, 0]), rows([-1, 0])], [0] * 3)
    scores = score_group(*group, LATE, config)
    assert scores.step.tolist() == pytest.approx([1.0, 1.0, -1.0])


@pytest.mark.parametrize(("group", "message"), [
    (([], [], []), "at least one rollout"),
    ((["a"], [], [1]), "answers"),
    ((["a"], [rows([1, 0])], [-1]), "answer_lengths"),
    ((["a", "a"], [rows([1, 0]), rows([1, 0, 0])], [1, 1]), "disagree on d"),
    ((["a"], [np.ones(3)], [1]), r"\(J, d\)"),
])
def test_bad_input_is_refused_with_a_clear_error(group, message):
    with pytest.raises(ValueError, match=message):
        score_group(*group, LATE, DEFAULT)


def test_non_string_answers_are_refused():
    with pytest.raises(TypeError, match="normalised strings"):
        score_group([3], [rows([1, 0])], [1], LATE, DEFAULT)


def test_outputs_are_read_only():
    scores = score_group(*three_agreeing_rollouts_and_one_outlier(), LATE, DEFAULT)
    with pytest.raises(ValueError):
        scores.step[0] = 1.0
