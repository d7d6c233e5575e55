"""The compiled Gram kernel (ireasoner/rewards/_gram.c) against float64 numpy, and the inputs it
cannot read in place (converted, same results)."""

from __future__ import annotations

import shutil
import sysconfig

import numpy as np
import pytest

from ireasoner.rewards import RewardConfig, score_batch, step_level

_gram = step_level._gram
needs_kernel = pytest.mark.skipif(_gram is None, reason="ireasoner.rewards._gram is not built")


def test_the_kernel_is_built_where_a_compiler_is():
    # setup.py builds it with optional=True: an install without a C compiler still succeeds,
    # on the torch path. Where the compiler Python was built with is there, a missing kernel
    # is a broken build, not a choice.
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): the torch path is expected")
    assert _gram is not None, ("ireasoner.rewards._gram did not build: `.venv/bin/pip install "
                               "--no-deps -v -e .` shows the compiler's error")


def ragged_case(seed: int, groups: int = 7, width: int = 4, dim: int = 37, positions: int = 5):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, positions + 3, size=groups * width)
    arrays = [rng.standard_normal((n, dim)).astype(np.float32) for n in lengths]
    rollout = np.arange(groups * width, dtype=np.int64).reshape(groups, width)
    chosen = rng.integers(0, 2, (groups, width))  # rollouts outside G keep nothing
    kept = np.minimum(lengths, positions).reshape(groups, width) * chosen
    return arrays, rollout, kept.astype(np.int64), dim, positions


def numpy_gram(arrays, rollout, kept, positions):
    groups, width = rollout.shape
    gram = np.zeros((groups, positions, width, width))
    for b in range(groups):
        for j in range(positions):
            for s in range(width):
                for t in range(width):
                    if kept[b, s] > j and kept[b, t] > j:
                        gram[b, j, s, t] = (arrays[rollout[b, s]][j].astype(np.float64)
                                            @ arrays[rollout[b, t]][j].astype(np.float64))
    return gram


@needs_kernel
@pytest.mark.parametrize("seed", range(5))
def test_member_gram_matches_float64_numpy(seed):
    arrays, rollout, kept, dim, positions = ragged_case(seed)
    gram = np.zeros((*rollout.shape[:1], positions, rollout.shape[1], rollout.shape[1]))
    assert _gram.member_gram(arrays, rollout, kept, gram, dim, 0, len(rollout)) == -1
    # Products of float32 entries are exact in double; only the order of the sums differs.
    np.testing.assert_allclose(gram, numpy_gram(arrays, rollout, kept, positions),
                               rtol=1e-13, atol=1e-12)


@needs_kernel
def test_member_gram_fills_only_its_range_of_groups():
    arrays, rollout, kept, dim, positions = ragged_case(0)
    gram = np.zeros((len(rollout), positions, rollout.shape[1], rollout.shape[1]))
    _gram.member_gram(arrays, rollout, kept, gram, dim, 2, 5)
    expected = numpy_gram(arrays, rollout, kept, positions)
    np.testing.assert_allclose(gram[2:5], expected[2:5], rtol=1e-13, atol=1e-12)
    assert not gram[:2].any() and not gram[5:].any()


@needs_kernel
def test_member_gram_names_the_first_array_it_cannot_read_in_place():
    arrays, rollout, kept, dim, positions = ragged_case(1)
    first = int(rollout[kept > 0][0])
    arrays[first] = arrays[first].astype(np.float64)
    gram = np.zeros((len(rollout), positions, rollout.shape[1], rollout.shape[1]))
    assert _gram.member_gram(arrays, rollout, kept, gram, dim, 0, len(rollout)) == first


@needs_kernel
@pytest.mark.parametrize(("arguments", "error", "message"), [
    (lambda a, r, k, g: ((a[0],), r, k, g), TypeError, "list"),
    (lambda a, r, k, g: (a, r.astype(np.int32), k, g), TypeError, "rollout"),
    (lambda a, r, k, g: (a, r, k, g.astype(np.float32)), TypeError, "out"),
    (lambda a, r, k, g: (a, r, k[:, :2].copy(), g), ValueError, "inconsistent"),
    (lambda a, r, k, g: (a, r + 1000, k, g), ValueError, "out of range"),
])
def test_member_gram_refuses_bad_arguments_with_a_clear_error(arguments, error, message):
    arrays, rollout, kept, dim, positions = ragged_case(2)
    kept[0, 0] = 1  # at least one row is read
    gram = np.zeros((len(rollout), positions, rollout.shape[1], rollout.shape[1]))
    with pytest.raises(error, match=message):
        _gram.member_gram(*arguments(arrays, rollout, kept, gram), dim, 0, len(rollout))


def unusual_layouts(rows: np.ndarray) -> dict[str, np.ndarray]:
    """The same (J, d) values in layouts the kernel cannot read in place, and one it can."""
    read_only = rows.copy()
    read_only.flags.writeable = False
    every_other = np.repeat(rows, 2, axis=0)[::2]  # a view whose rows are 2 rows apart
    return {"float64": rows.astype(np.float64), "float16": rows.astype(np.float16),
            "fortran": np.asfortranarray(rows), "big-endian": rows.astype(">f4"),
            "read-only": read_only, "strided rows": every_other}


@pytest.mark.parametrize("layout", list(unusual_layouts(np.zeros((1, 1)))))
def test_unusual_layouts_score_like_plain_float32(layout):
    rng = np.random.default_rng(3)
    groups = [(["a", "a", "a", "b"], [rng.standard_normal((n, 16)).astype(np.float32)
                                      for n in (3, 4, 2, 5)], [10, 20, 30, 40])
              for _ in range(70)]  # >= 64 groups: the threaded path
    if layout == "float16":  # the reference holds the values float16 can keep
        groups = [(a, [e.astype(np.float16).astype(np.float32) for e in es], n)
                  for a, es, n in groups]
    config = RewardConfig()
    plain = score_batch(groups, 10_000, config)
    unusual = score_batch([(a, [unusual_layouts(e)[layout] for e in es], n)
                           for a, es, n in groups], 10_000, config)
    for expected, got in zip(plain, unusual, strict=True):
        np.testing.assert_allclose(got.step, expected.step, rtol=1e-6)
        np.testing.assert_allclose(got.loo_similarity, expected.loo_similarity, rtol=1e-6)
