"""Bar, line and pie charts with every value written on the chart, and questions on them."""

from __future__ import annotations

import random

from ireasoner.data.figures.common import (
    INK,
    PALETTE,
    Figure,
    SyntheticQA,
    blank_canvas,
    distinct_ints,
    font_for,
    listing,
    maybe_multiple_choice,
    pick_questions,
    qa,
    text_at,
)

CATEGORY_POOLS = (
    ("Apple", "Pear", "Plum", "Fig", "Kiwi", "Lime", "Mango"),
    ("Oak", "Elm", "Ash", "Fir", "Pine", "Yew", "Birch"),
    ("Red", "Blue", "Green", "Gold", "Gray", "Pink", "Teal"),
)
MEASURES = ("Sales", "Votes", "Visitors", "Points", "Orders")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def draw_bar_chart(rng: random.Random, size: tuple[int, int]) -> Figure:
    count = rng.randint(3, 6)
    labels = rng.sample(rng.choice(CATEGORY_POOLS), count)
    values = distinct_ints(rng, count, 5, 95)
    title = rng.choice(MEASURES)
    image, draw = blank_canvas(size)
    width, height = size
    face, title_face = font_for(size), font_for(size, 1.2)
    left, right, top, bottom = 0.06 * width, 0.96 * width, 0.2 * height, 0.86 * height
    text_at(draw, (width / 2, 0.07 * height), title, title_face)
    draw.line([(left, bottom), (right, bottom)], fill=INK, width=1)
    slot = (right - left) / count
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        centre = left + slot * (index + 0.5)
        bar_top = bottom - (bottom - top) * value / 100
        draw.rectangle([centre - 0.3 * slot, bar_top, centre + 0.3 * slot, bottom],
                       fill=PALETTE[index % len(PALETTE)])
        text_at(draw, (centre, bar_top - 0.045 * height), str(value), face)
        text_at(draw, (centre, bottom + 0.06 * height), label, face)
    facts = {"title": title, "labels": labels, "values": values}
    questions = _category_questions(rng, labels, values, "bar")
    return Figure(image, facts, pick_questions(rng, questions))


def draw_line_chart(rng: random.Random, size: tuple[int, int]) -> Figure:
    count = rng.randint(4, 7)
    start = rng.randrange(len(MONTHS) - count + 1)
    labels = list(MONTHS[start:start + count])
    values = distinct_ints(rng, count, 10, 90)
    title = rng.choice(MEASURES) + " per month"
    image, draw = blank_canvas(size)
    width, height = size
    face, title_face = font_for(size), font_for(size, 1.2)
    left, right, top, bottom = 0.08 * width, 0.94 * width, 0.22 * height, 0.84 * height
    text_at(draw, (width / 2, 0.07 * height), title, title_face)
    draw.line([(left, bottom), (right, bottom)], fill=INK, width=1)
    step = (right - left) / (count - 1)
    points = [(left + step * i, bottom - (bottom - top) * v / 100) for i, v in enumerate(values)]
    draw.line(points, fill=PALETTE[0], width=2)
    radius = max(2, round(min(size) / 80))
    for (x, y), label, value in zip(points, labels, values, strict=True):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=PALETTE[1])
        text_at(draw, (x, y - 0.06 * height), str(value), face)
        text_at(draw, (x, bottom + 0.07 * height), label, face)
    facts = {"title": title, "labels": labels, "values": values}
    questions = [*_extreme_questions(rng, labels, values, "month"),
                 _difference_question(rng, labels, values), _rises_question(labels, values),
                 _value_question(rng, labels, values, "month")]
    return Figure(image, facts, pick_questions(rng, questions))


def draw_pie_chart(rng: random.Random, size: tuple[int, int]) -> Figure:
    count = rng.randint(3, 5)
    labels = rng.sample(rng.choice(CATEGORY_POOLS), count)
    shares = _distinct_shares(rng, count)
    image, draw = blank_canvas(size)
    width, height = size
    face = font_for(size)
    radius = 0.4 * min(0.55 * width, height)
    centre = (0.05 * width + radius, height / 2)
    box = [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius]
    angle = -90.0
    legend_x, row, key = 0.1 * width + 2 * radius, height / (count + 1), min(size) / 24
    for index, (label, share) in enumerate(zip(labels, shares, strict=True)):
        colour = PALETTE[index % len(PALETTE)]
        draw.pieslice(box, angle, angle + 3.6 * share, fill=colour, outline=(255, 255, 255))
        angle += 3.6 * share
        y = row * (index + 1)
        draw.rectangle([legend_x, y - key / 2, legend_x + key, y + key / 2], fill=colour)
        text_at(draw, (legend_x + 1.6 * key, y), f"{label}: {share}%", face, align="left")
    facts = {"labels": labels, "percentages": shares}
    questions = _category_questions(rng, labels, shares, "slice", unit="%")
    return Figure(image, facts, pick_questions(rng, questions))


def _distinct_shares(rng: random.Random, count: int) -> list[int]:
    """Whole percentages, all different, each at least 5, summing to 100."""
    while True:
        cuts = sorted(rng.sample(range(1, 100), count - 1))
        shares = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
        if min(shares) >= 5 and len(set(shares)) == count:
            return shares


def _category_questions(rng: random.Random, labels: list[str], values: list[int], noun: str,
                        unit: str = "") -> list[SyntheticQA]:
    first, second = rng.sample(range(len(labels)), 2)
    total = values[first] + values[second]
    sum_question = qa(
        f"What is the sum of the values of {labels[first]} and {labels[second]}?", total,
        f"The {noun} for {labels[first]} is {values[first]}{unit}.",
        f"The {noun} for {labels[second]} is {values[second]}{unit}.",
        f"{values[first]} + {values[second]} = {total}.",
    )
    spread = max(values) - min(values)
    spread_question = qa(
        "What is the difference between the largest and the smallest value?", spread,
        f"The values are {listing(labels, values, unit)}.",
        f"The largest is {max(values)} and the smallest is {min(values)}.",
        f"{max(values)} - {min(values)} = {spread}.",
    )
    return [*_extreme_questions(rng, labels, values, noun), sum_question, spread_question,
            _count_above_question(rng, labels, values, noun),
            _value_question(rng, labels, values, noun)]


def _extreme_questions(rng: random.Random, labels: list[str], values: list[int],
                       noun: str) -> list[SyntheticQA]:
    questions = []
    for word, pick in (("largest", max), ("smallest", min)):
        extreme = pick(values)
        winner = labels[values.index(extreme)]
        item = qa(f"Which {noun} has the {word} value?", winner,
                  f"The values are {listing(labels, values)}.",
                  f"The {word} of these is {extreme}.", f"{extreme} belongs to {winner}.")
        questions.append(maybe_multiple_choice(rng, item, labels))
    return questions


def _count_above_question(rng: random.Random, labels: list[str], values: list[int],
                          noun: str) -> SyntheticQA:
    threshold = rng.choice(sorted(values)[:-1])  # a drawn value, so "greater than" is clear-cut
    above = [label for label, value in zip(labels, values, strict=True) if value > threshold]
    return qa(f"How many {noun}s have a value greater than {threshold}?", len(above),
              f"The values are {listing(labels, values)}.",
              f"The values greater than {threshold} belong to {', '.join(above)}.",
              f"That is {len(above)} {noun}{'s' if len(above) > 1 else ''}.")


def _value_question(rng: random.Random, labels: list[str], values: list[int],
                    noun: str) -> SyntheticQA:
    index = rng.randrange(len(labels))
    return qa(f"What value is shown for {labels[index]}?", values[index],
              f"The {noun} labelled {labels[index]} is marked with the number {values[index]}.")


def _difference_question(rng: random.Random, labels: list[str], values: list[int]) -> SyntheticQA:
    first, second = sorted(rng.sample(range(len(labels)), 2))
    gap = abs(values[second] - values[first])
    high, low = max(values[first], values[second]), min(values[first], values[second])
    return qa(
        f"By how much does the value differ between {labels[first]} and {labels[second]}?", gap,
        f"In {labels[first]} the value is {values[first]}.",
        f"In {labels[second]} the value is {values[second]}.",
        f"{high} - {low} = {gap}.",
    )


def _rises_question(labels: list[str], values: list[int]) -> SyntheticQA:
    moves = [(labels[i], labels[i + 1], values[i], values[i + 1]) for i in range(len(values) - 1)]
    sentences = [f"From {a} to {b} the value goes from {u} to {v}, {'up' if v > u else 'down'}."
                 for a, b, u, v in moves]
    rises = sum(v > u for _, _, u, v in moves)
    sentences.append(f"The value goes up {rises} time{'' if rises == 1 else 's'}.")
    return qa("How many times does the value go up from one month to the next?", rises,
              *sentences)

