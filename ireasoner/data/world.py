"""A miniature world with something to learn: a 3x3 grid of coloured shapes and questions such
as "How many red or blue shapes are there?", answered by counting in numbered steps.

The Solver's steps count each of the two colours, then add: "Step 1: red 2", "Step 2: blue 1",
"Step 3: 2 + 1 = 3". (Version 1 listed the grid row by row first; the tiny model could not learn
to read cells by position, so its traces were guesses: see ireasoner.model.world.)
A layout depends only on (seed, index). Its split (train / validation / held_out) is a hash of
the layout itself, so two indices that happen to draw the same grid land in the same split: the
splits are disjoint by content, not just by index. RL stages read the train split's images only
(data.source: world); the answers serve the warm-up, validation and the held-out benchmark.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from PIL import Image, ImageDraw

from ireasoner.data.figures.common import SyntheticQA, qa

Split = Literal["train", "validation", "held_out"]
SPLITS: tuple[Split, ...] = ("train", "validation", "held_out")

GRID = 3
CELL = 28  # pixels: one merged 28x28 patch of Qwen2.5-VL's vision tower per cell
IMAGE_SIZE = GRID * CELL
COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 230), "green": (40, 170, 60),
           "yellow": (235, 200, 30)}
SHAPES = ("circle", "square", "triangle")
EMPTY_PROBABILITY = 0.3
# Percent of layout hashes per split: held-out and validation are small, train is the rest.
_SPLIT_PERCENT = {"held_out": 10, "validation": 10}
HELD_OUT_SIZE = 128

COLOUR_PAIRS = tuple(combinations(COLOURS, 2))
EMPTY = "empty"
QUESTION_TEMPLATE = "How many {first} or {second} shapes are there?"


@dataclass(frozen=True)
class WorldSample:
    image_id: str
    split: Split
    cells: tuple[tuple[str, str] | None, ...]  # row-major (colour, shape), None = empty
    image: Image.Image
    qa: tuple[SyntheticQA, ...]  # one per colour pair, in COLOUR_PAIRS order


def questions() -> tuple[str, ...]:
    """Every question the world asks (the Proposer's repertoire)."""
    return tuple(QUESTION_TEMPLATE.format(first=a, second=b) for a, b in COLOUR_PAIRS)


def layout(seed: int, index: int) -> tuple[tuple[str, str] | None, ...]:
    rng = random.Random(f"ireasoner.world/{seed}/{index}")
    return tuple(
        None if rng.random() < EMPTY_PROBABILITY else (rng.choice(list(COLOURS)), rng.choice(SHAPES))
        for _ in range(GRID * GRID)
    )


def split_of(cells: tuple[tuple[str, str] | None, ...]) -> Split:
    key = "|".join("-" if c is None else f"{c[0]}:{c[1]}" for c in cells)
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 100
    if bucket < _SPLIT_PERCENT["held_out"]:
        return "held_out"
    if bucket < _SPLIT_PERCENT["held_out"] + _SPLIT_PERCENT["validation"]:
        return "validation"
    return "train"


def world_samples(split: Split, n: int, seed: int = 0) -> list[WorldSample]:
    """The first `n` layouts of `split` (indices walked from 0): a longer list extends a shorter
    one, and the same (split, n, seed) always gives the same samples."""
    if split not in SPLITS:
        raise ValueError(f"unknown world split {split!r}; expected one of {SPLITS}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    samples: list[WorldSample] = []
    index = 0
    while len(samples) < n:
        cells = layout(seed, index)
        if split_of(cells) == split:
            samples.append(WorldSample(f"world-{seed}-{index:06d}", split, cells, draw(cells),
                                       answers(cells)))
        index += 1
    return samples


def count(cells, colour: str) -> int:
    return sum(1 for cell in cells if cell is not None and cell[0] == colour)


def answers(cells) -> tuple[SyntheticQA, ...]:
    """The counting question of every colour pair with its steps: the count of each colour (what
    was seen), then their sum."""
    items = []
    for first, second in COLOUR_PAIRS:
        a, b = count(cells, first), count(cells, second)
        items.append(qa(QUESTION_TEMPLATE.format(first=first, second=second), a + b,
                        f"{first} {a}", f"{second} {b}", f"{a} + {b} = {a + b}"))
    return tuple(items)


def cell_names(cells) -> list[str]:
    """What each cell shows, row-major: its colour, or "empty"."""
    return [EMPTY if cell is None else cell[0] for cell in cells]


def draw(cells) -> Image.Image:
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    margin = 4
    for position, cell in enumerate(cells):
        if cell is None:
            continue
        colour, shape = cell
        row, column = divmod(position, GRID)
        left, top = column * CELL + margin, row * CELL + margin
        right, bottom = left + CELL - 2 * margin, top + CELL - 2 * margin
        fill = COLOURS[colour]
        if shape == "circle":
            pen.ellipse((left, top, right, bottom), fill=fill)
        elif shape == "square":
            pen.rectangle((left, top, right, bottom), fill=fill)
        else:
            pen.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=fill)
    return image
