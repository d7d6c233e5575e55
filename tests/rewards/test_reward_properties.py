"""Properties of the scoring that must hold for any input (hypothesis)."""

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ireasoner.rewards import RewardConfig, lambda_at, score_batch, score_group
from ireasoner.rewards.reference import reference_score_group

DIM = 3
CONFIGS = st.builds(
    RewardConfig,
    mode=st.sampled_from(["continuous", "discrete"]),
    similarity_range=st.sampled_from(["unit", "signed"]),
    use_density=st.booleans(),
    max_steps=st.integers(1, 6),
    min_group_for_step=st.integers(1, 3),
    position_decay=st.sampled_from([0.0, 0.15, 2.0]),
    gamma=st.sampled_from([0.0, 0.7, 2.0]),
    alpha=st.sampled_from([0.5, 0.7, 1.0]),
    proposer_unparsable=st.sampled_from(["singleton", "excluded"]),
)
VALUES = st.floats(-1, 1, allow_nan=False, width=32)
WILD_VALUES = st.one_of(VALUES, st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))


@st.composite
def groups(draw, values=VALUES, positive=False, min_size=1):
    n = draw(st.integers(min_size, 6))
    answers = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    elements = st.floats(1 / 64, 1, width=32) if positive else values
    embeddings = [np.array(draw(st.lists(st.lists(elements, min_size=DIM, max_size=DIM),
                                         max_size=8)), dtype=np.float32).reshape(-1, DIM)
                  for _ in range(n)]
    lengths = draw(st.lists(st.integers(0, 300), min_size=n, max_size=n))
    return answers, embeddings, lengths


def has_unique_dominant(answers):
    counts = Counter(a for a in answers if a is not None).most_common()
    return len(counts) < 2 or counts[0][1] > counts[1][1]


@settings(max_examples=150, deadline=None)
@given(groups(values=WILD_VALUES), CONFIGS, st.integers(0, 3000))
def test_every_reward_is_finite_and_in_its_documented_range(group, config, iteration):
    scores = score_group(*group, lambda_at(iteration, config, 2500), config)
    low = -1.0 if config.similarity_range == "signed" else 0.0
    for name in ("answer", "step", "solver"):
        values = getattr(scores, name)
        assert np.isfinite(values).all(), name
    assert ((scores.answer >= 0) & (scores.answer <= 1)).all()
    assert ((scores.step >= low) & (scores.step <= 1 + 1e-9)).all()
    assert ((scores.solver >= low) & (scores.solver <= 1 + 1e-9)).all()
    assert 0 < scores.proposer <= 1
    assert 0 <= scores.entropy <= math.log(len(group[0])) + 1e-9
    assert 0 <= scores.group_fraction <= 1 and 0 <= scores.density <= 1
    assert (scores.step[~scores.in_group] == 0).all()
    finite = scores.step_similarity[np.isfinite(scores.step_similarity)]
    assert ((finite >= low) & (finite <= 1 + 1e-9)).all()


@settings(max_examples=100, deadline=None)
@given(groups(), CONFIGS, st.randoms(use_true_random=False))
def test_shuffling_rollouts_permutes_the_outputs_the_same_way(group, config, random):
    answers, embeddings, lengths = group
    assume(has_unique_dominant(answers))  # a tie is broken by order, by design
    order = list(range(len(answers)))
    random.shuffle(order)
    before = score_group(*group, 0.7, config)
    after = score_group([answers[i] for i in order], [embeddings[i] for i in order],
                        [lengths[i] for i in order], 0.7, config)
    for name in ("answer", "step", "solver", "in_group", "step_similarity", "loo_similarity"):
        np.testing.assert_allclose(getattr(after, name), getattr(before, name)[order],
                                   atol=1e-6, err_msg=name)
    assert after.dominant_answer == before.dominant_answer
    assert after.entropy == pytest.approx(before.entropy)


@settings(max_examples=100, deadline=None)
@given(groups(), CONFIGS, st.data())
def test_scaling_an_embedding_changes_nothing(group, config, data):
    answers, embeddings, lengths = group
    index = data.draw(st.integers(0, len(answers) - 1))
    factor = data.draw(st.floats(1e-3, 1e3))
    scaled = [e * np.float32(factor) if i == index else e for i, e in enumerate(embeddings)]
    # Float32-subnormal entries (|x| < 1.2e-38) lose digits when scaled, or become 0: the row
    # itself then points elsewhere, and the scorer rightly follows it.
    tiny = np.finfo(np.float32).tiny
    for row in (embeddings[index], scaled[index]):
        assume(not ((row != 0) & (np.abs(row) < tiny)).any())
    before = score_group(*group, 0.7, config)
    after = score_group(answers, scaled, lengths, 0.7, config)
    np.testing.assert_allclose(after.step, before.step, atol=1e-5)
    np.testing.assert_allclose(after.solver, before.solver, atol=1e-5)


@settings(max_examples=100, deadline=None)
@given(groups(positive=True, min_size=2), st.data())
def test_moving_a_step_towards_its_prototype_never_lowers_its_step_reward(group, data):
    """Positive embeddings (all cosines >= 0), as mean token embeddings tend to be. With the
    prototype including the step itself (Eq. 3), a step nearly opposite to a short sum of the
    others could lose similarity when moved; that regime is outside this property."""
    answers, embeddings, lengths = group
    config = RewardConfig(min_group_for_step=1)
    before = score_group(*group, 0.7, config)
    members = [(i, j) for i in np.flatnonzero(before.in_group) for j in range(len(embeddings[i]))
               if j < config.max_steps]
    assume(members)
    i, j = data.draw(st.sampled_from(members))
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    prototype = np.mean([unit(embeddings[k][j]) for k, _ in enumerate(embeddings)
                         if before.in_group[k] and len(embeddings[k]) > j], axis=0)
    step = data.draw(st.floats(0.0, 1.0))
    moved = [e.copy() for e in embeddings]
    moved[i][j] = (1 - step) * unit(embeddings[i][j]) + step * prototype
    after = score_group(answers, moved, lengths, 0.7, config)
    assert after.step[i] >= before.step[i] - 1e-6


@settings(max_examples=60, deadline=None)
@given(st.lists(groups(values=WILD_VALUES), min_size=1, max_size=5), CONFIGS)
def test_score_batch_equals_score_group_group_by_group(batch, config):
    together = score_batch(batch, 0.5, config)
    for group, scores in zip(batch, together, strict=True):
        alone = score_group(*group, 0.5, config)
        for name in ("answer", "step", "solver", "in_group", "step_similarity",
                     "loo_similarity", "disagreement"):
            np.testing.assert_allclose(getattr(scores, name), getattr(alone, name),
                                       atol=1e-6, err_msg=name)
        for name in ("proposer", "entropy", "density", "lam", "group_fraction", "mean_steps"):
            assert getattr(scores, name) == pytest.approx(getattr(alone, name)), name
        assert scores.dominant_answer == alone.dominant_answer
        assert scores.valid_positions == alone.valid_positions


@settings(max_examples=150, deadline=None)
@given(st.lists(groups(values=st.one_of(VALUES, st.just(0.0))), min_size=1, max_size=4),
       CONFIGS, st.integers(0, 3000))
def test_score_batch_agrees_with_the_per_rollout_loop_of_the_spec(batch, config, iteration):
    """Against the spec transcribed rollout by rollout (ireasoner.rewards.reference), whatever
    min_group_for_step: rows nothing uses are skipped, never needed."""
    lam = lambda_at(iteration, config, 2500)
    for group, scores in zip(batch, score_batch(batch, lam, config), strict=True):
        expected = reference_score_group(*group, lam, config)
        np.testing.assert_allclose(scores.solver, expected.solver, atol=1e-5)
        assert scores.proposer == pytest.approx(expected.proposer)
        np.testing.assert_allclose(scores.loo_similarity, expected.loo, atol=1e-5)
