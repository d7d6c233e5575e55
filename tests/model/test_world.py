"""The world model: its recorded held-out pass@1 lies in the band and maj@5 above it (a rebuild
that lands outside fails here), and the configs ask what its warm-up taught."""

import dataclasses
from pathlib import Path

import pytest
import torch

from ireasoner.config import load_config
from ireasoner.model.world import (
    PASS_BAND,
    VALIDATION_PASS_RANGE,
    WORLD_IVR_PROMPT,
    WORLD_PROPOSER_PROMPT,
    WORLD_SOLVER_PROMPT,
    blended,
    check_report,
    eligible,
    ensure_world_model,
    read_report,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def report():
    return read_report(ensure_world_model(seed=0))


def test_the_cached_warm_up_lands_in_the_band_with_maj_at_5_above_pass_at_1(report):
    check_report(report)
    assert PASS_BAND[0] <= report.held_out_pass_at_1 <= PASS_BAND[1]
    assert report.held_out_maj_at_5 > report.held_out_pass_at_1
    assert report.held_out_images == 128


@pytest.mark.parametrize("pass_at_1, maj_at_5", [(0.2, 0.3), (0.65, 0.7), (0.4, 0.38)])
def test_a_rebuild_outside_the_band_fails_the_check(report, pass_at_1, maj_at_5):
    off = dataclasses.replace(report, held_out_pass_at_1=pass_at_1, held_out_maj_at_5=maj_at_5)
    with pytest.raises(ValueError, match="world model"):
        check_report(off)


def test_the_kept_validation_range_lies_inside_the_band():
    assert PASS_BAND[0] < VALIDATION_PASS_RANGE[0] < VALIDATION_PASS_RANGE[1] < PASS_BAND[1]


@pytest.mark.parametrize("pass_at_1, maj_at_5, expected", [
    (0.45, 0.55, True),   # inside the range, majority 10 points up
    (0.30, 0.35, True),   # the range's edge, gain exactly 0.05 (a mean of means: inexact)
    (0.61, 0.72, False),  # past the range: the check that ended the SFT
    (0.25, 0.40, False),  # under it
    (0.45, 0.48, False),  # majority not clearly above one sample
])
def test_a_check_is_eligible_inside_the_range_with_a_clear_majority_gain(pass_at_1, maj_at_5,
                                                                          expected):
    record = {"pass_at_1": pass_at_1, "maj_at_5": maj_at_5}
    assert eligible(record, VALIDATION_PASS_RANGE) is expected


def test_blended_weights_interpolate_floats_and_take_the_later_integers():
    before = {"w": torch.zeros(3), "steps": torch.tensor([1])}
    after = {"w": torch.tensor([4.0, 8.0, -4.0]), "steps": torch.tensor([2])}
    mix = blended(before, after, 0.25)
    assert torch.equal(mix["w"], torch.tensor([1.0, 2.0, -1.0]))
    assert torch.equal(mix["steps"], torch.tensor([2]))
    assert torch.equal(blended(before, after, 1.0)["w"], after["w"])


def test_the_world_configs_use_the_warm_ups_prompts():
    world = load_config(str(CONFIGS / "world.yaml"))
    assert (world.proposer.prompt, world.solver.prompt) == (WORLD_PROPOSER_PROMPT,
                                                            WORLD_SOLVER_PROMPT)
    assert world.model.name_or_path == "world" and world.data.source == "world"
    assert load_config(str(CONFIGS / "world_ivr.yaml")).solver.prompt == WORLD_IVR_PROMPT
