"""A training config small enough for end-to-end flow tests on 2 cores."""

import pytest

# 3 iterations x 1 image x 3 rollouts of <= 128 tokens; the Proposer updates at iteration 2;
# the Solver is evaluated after iteration 3.
TINY_RUN = [
    "schedule.iterations=3",
    "schedule.images_per_iteration=1",
    "solver.num_rollouts=3",
    "solver.max_new_tokens=128",
    "proposer.max_new_tokens=24",
    "proposer.update_every=2",
    "data.synthetic_count=4",
    "rewards.warmup_iterations=1",
    "rewards.ramp_iterations=1",
    # Evaluate the final Solver on the project's local lmms-eval task (no download).
    "evaluation.every=3",
    "evaluation.limit=2",
    "evaluation.max_new_tokens=32",
]


@pytest.fixture(scope="session")
def tiny_run() -> list[str]:
    """Overrides of configs/smoke.yaml for a 3-iteration run (add storage.run_dir)."""
    return list(TINY_RUN)
