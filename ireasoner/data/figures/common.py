"""What every figure drawer shares: the QA record, the drawer's result, fonts, text placement,
and the question-picking rules (2–4 questions per image, some as multiple choice)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

PALETTE = (
    (66, 114, 196), (237, 125, 49), (112, 173, 71), (255, 192, 0),
    (91, 155, 213), (165, 105, 189), (200, 80, 80), (96, 96, 96),
)
INK = (20, 20, 20)
OPTION_LETTERS = "ABCD"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class SyntheticQA:
    question: str
    answer: str
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Figure:
    """A drawer's output: the picture, the facts it was drawn from, and questions on them."""

    image: Image.Image
    facts: dict[str, Any]
    qa: tuple[SyntheticQA, ...]


Drawer = Callable[[random.Random, tuple[int, int]], Figure]


def qa(question: str, answer: object, *sentences: str) -> SyntheticQA:
    """Number the reasoning sentences the way the Solver is asked to: "Step k: ..."."""
    steps = tuple(f"Step {k}: {sentence}" for k, sentence in enumerate(sentences, start=1))
    return SyntheticQA(question, str(answer), steps)


def pick_questions(rng: random.Random, candidates: Sequence[SyntheticQA]) -> tuple[SyntheticQA, ...]:
    count = rng.randint(2, min(4, len(candidates)))
    return tuple(rng.sample(list(candidates), count))


def maybe_multiple_choice(rng: random.Random, item: SyntheticQA,
                          choices: Sequence[str]) -> SyntheticQA:
    """Half the time, ask a word-answer question with lettered options drawn from `choices`."""
    if rng.random() < 0.5:
        return item
    distractors = rng.sample([c for c in choices if c != item.answer], min(3, len(choices) - 1))
    options = distractors + [item.answer]
    rng.shuffle(options)
    letter = OPTION_LETTERS[options.index(item.answer)]
    listed = " ".join(f"({OPTION_LETTERS[i]}) {option}" for i, option in enumerate(options))
    question = f"{item.question} Choices: {listed}. Answer with the option letter."
    last = f"Step {len(item.steps) + 1}: {item.answer} is option {letter}."
    return SyntheticQA(question, letter, (*item.steps, last))


def distinct_ints(rng: random.Random, count: int, low: int, high: int) -> list[int]:
    """Distinct so that "largest" and "smallest" always name exactly one item."""
    return rng.sample(range(low, high + 1), count)


def blank_canvas(size: tuple[int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", size, (255, 255, 255))
    return image, ImageDraw.Draw(image)


@lru_cache(maxsize=16)
def font(size: int) -> Font:
    """Pillow's bundled font (FreeType when available, else its fixed-size bitmap font)."""
    return ImageFont.load_default(size=size)


def font_for(size: tuple[int, int], scale: float = 1.0) -> Font:
    return font(max(8, round(min(size) / 20 * scale)))


def text_at(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, face: Font,
            align: str = "center", fill: tuple[int, int, int] = INK) -> None:
    """Place text horizontally centred on (or starting / ending at) x, vertically centred on y."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    width, height = right - left, bottom - top
    x, y = xy
    offset_x = {"center": width / 2, "left": 0.0, "right": width}[align]
    draw.text((round(x - offset_x - left), round(y - height / 2 - top)), text, font=face, fill=fill)


def listing(labels: Sequence[str], values: Sequence[int], unit: str = "") -> str:
    return ", ".join(f"{label} = {value}{unit}" for label, value in zip(labels, values, strict=True))
