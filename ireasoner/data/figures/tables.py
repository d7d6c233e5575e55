"""Small tables (an item column and two number columns) and questions that read or add cells."""

from __future__ import annotations

import random

from PIL import ImageDraw

from ireasoner.data.figures.common import (
    INK,
    Figure,
    blank_canvas,
    distinct_ints,
    font_for,
    listing,
    maybe_multiple_choice,
    pick_questions,
    qa,
    text_at,
)

TABLE_LAYOUTS = (
    ("Shop", ("Bread", "Milk", "Eggs", "Rice", "Tea", "Jam"), ("Price", "Qty")),
    ("Class", ("Ana", "Ben", "Cleo", "Dev", "Eli", "Finn"), ("Math", "Art")),
    ("League", ("Lions", "Hawks", "Bears", "Wolves", "Foxes", "Owls"), ("Won", "Lost")),
)


def draw_table(rng: random.Random, size: tuple[int, int]) -> Figure:
    title, pool, columns = rng.choice(TABLE_LAYOUTS)
    rows = rng.sample(pool, rng.randint(3, 5))
    cells = {column: distinct_ints(rng, len(rows), 1, 40) for column in columns}
    image, draw = blank_canvas(size)
    _draw_grid(draw, size, title, ["Item", *columns],
               [[row, *(str(cells[c][i]) for c in columns)] for i, row in enumerate(rows)])
    first, second = columns
    top_value = max(cells[first])
    top_row = rows[cells[first].index(top_value)]
    highest = qa(f"Which item has the highest value in the {first} column?", top_row,
                 f"The {first} column reads {listing(rows, cells[first])}.",
                 f"The highest is {top_value}, in the row of {top_row}.")
    total = sum(cells[second])
    adding = " + ".join(str(v) for v in cells[second])
    column_total = qa(f"What is the total of the {second} column?", total,
                      f"The {second} column reads {listing(rows, cells[second])}.",
                      f"{adding} = {total}.")
    pick = rng.randrange(len(rows))
    lookup = qa(f"What is the value in the {second} column for {rows[pick]}?", cells[second][pick],
                f"In the row of {rows[pick]}, the {second} column reads {cells[second][pick]}.")
    a, b = cells[first][pick], cells[second][pick]
    row_sum = qa(f"What is the sum of the {first} and {second} values for {rows[pick]}?", a + b,
                 f"In the row of {rows[pick]}, {first} is {a} and {second} is {b}.",
                 f"{a} + {b} = {a + b}.")
    questions = [maybe_multiple_choice(rng, highest, rows), column_total, lookup, row_sum]
    facts = {"title": title, "rows": rows, "columns": list(columns),
             "cells": {column: cells[column] for column in columns}}
    return Figure(image, facts, pick_questions(rng, questions))


def _draw_grid(draw: ImageDraw.ImageDraw, size: tuple[int, int], title: str, header: list[str],
               body: list[list[str]]) -> None:
    width, height = size
    face, title_face = font_for(size), font_for(size, 1.2)
    text_at(draw, (width / 2, 0.08 * height), title, title_face)
    left, right, top, bottom = 0.08 * width, 0.92 * width, 0.18 * height, 0.94 * height
    row_height = (bottom - top) / (len(body) + 1)
    col_width = (right - left) / len(header)
    draw.rectangle([left, top, right, top + row_height], fill=(225, 232, 245))
    for r, cells in enumerate([header, *body]):
        y = top + row_height * (r + 0.5)
        for c, text in enumerate(cells):
            text_at(draw, (left + col_width * (c + 0.5), y), text, face)
    for r in range(len(body) + 2):
        draw.line([(left, top + row_height * r), (right, top + row_height * r)], fill=INK)
    for c in range(len(header) + 1):
        draw.line([(left + col_width * c, top), (left + col_width * c, bottom)], fill=INK)
