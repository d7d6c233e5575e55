"""The miniature world: deterministic layouts, content-disjoint splits, answers that count what
is drawn, and the `world` data source (train split only, no labels)."""

import pytest

from ireasoner.config import DataConfig
from ireasoner.data.sources import load_images
from ireasoner.data.world import (
    CELL,
    COLOURS,
    GRID,
    IMAGE_SIZE,
    SPLITS,
    questions,
    split_of,
    world_samples,
)


def test_samples_are_deterministic_and_a_longer_list_extends_a_shorter_one():
    short, long = world_samples("train", 5, seed=3), world_samples("train", 8, seed=3)
    assert [s.image_id for s in short] == [s.image_id for s in long[:5]]
    assert [s.image.tobytes() for s in short] == [s.image.tobytes() for s in long[:5]]
    assert [s.cells for s in world_samples("train", 5, seed=4)] != [s.cells for s in short]


def test_the_splits_are_disjoint_by_content():
    layouts = {split: {s.cells for s in world_samples(split, 128)} for split in SPLITS}
    assert not layouts["train"] & layouts["held_out"]
    assert not layouts["train"] & layouts["validation"]
    assert not layouts["validation"] & layouts["held_out"]
    for split, cells in layouts.items():  # the split is a function of the layout alone
        assert {split_of(c) for c in cells} == {split}


def test_answers_count_the_shapes_that_are_drawn():
    for sample in world_samples("held_out", 20):
        for item in sample.qa:
            first, second = (c for c in COLOURS if f" {c} " in f" {item.question} ")
            drawn = 0
            for position in range(GRID * GRID):  # read the colour back from the cell's centre
                row, column = divmod(position, GRID)
                centre = sample.image.getpixel((column * CELL + CELL // 2,
                                                row * CELL + CELL * 2 // 3))
                drawn += centre in (COLOURS[first], COLOURS[second])
            assert item.answer == str(drawn), (sample.image_id, item.question)
            assert item.steps[-1].endswith(f"= {item.answer}")
    assert sample.image.size == (IMAGE_SIZE, IMAGE_SIZE)
    assert [item.question for item in sample.qa] == list(questions())


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown world split"):
        world_samples("test", 1)


def test_the_world_source_gives_train_images_without_labels():
    image_set = load_images(DataConfig(source="world", synthetic_count=12, shuffle=False))
    train = world_samples("train", 12)
    assert [r.image_id for r in image_set.records] == [s.image_id for s in train]
    assert all(r.facts is None for r in image_set.records)
