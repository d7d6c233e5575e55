"""Geometry figures drawn to scale with their lengths and angles marked, and questions whose
answers follow from the marks (whole numbers only)."""

from __future__ import annotations

import math
import random

from ireasoner.data.figures.common import (
    INK,
    PALETTE,
    Figure,
    blank_canvas,
    font_for,
    pick_questions,
    qa,
    text_at,
)

# Right triangles with whole sides (each has an even leg, so the area is whole too).
PYTHAGOREAN_TRIPLES = (
    (3, 4, 5), (6, 8, 10), (9, 12, 15), (12, 16, 20), (15, 20, 25),
    (5, 12, 13), (10, 24, 26), (8, 15, 17), (7, 24, 25), (20, 21, 29),
)
Point = tuple[float, float]


def draw_rectangle(rng: random.Random, size: tuple[int, int]) -> Figure:
    side_w, side_h = rng.sample(range(2, 21), 2)
    image, draw = blank_canvas(size)
    width, height = size
    face = font_for(size)
    unit = min(0.7 * width / side_w, 0.6 * height / side_h)
    x0, y0 = (width - unit * side_w) / 2, (height - unit * side_h) / 2
    x1, y1 = x0 + unit * side_w, y0 + unit * side_h
    draw.rectangle([x0, y0, x1, y1], outline=INK, fill=(225, 235, 250), width=2)
    text_at(draw, ((x0 + x1) / 2, y1 + 0.06 * height), f"{side_w} cm", face)
    text_at(draw, (x1 + 0.02 * width, (y0 + y1) / 2), f"{side_h} cm", face, align="left")
    perimeter, area = 2 * (side_w + side_h), side_w * side_h
    longer, shorter = max(side_w, side_h), min(side_w, side_h)
    sides = f"The rectangle is {side_w} cm wide and {side_h} cm tall."
    questions = [
        qa("What is the perimeter of the rectangle in cm?", perimeter, sides,
           f"Perimeter = 2 × ({side_w} + {side_h}) = {perimeter}."),
        qa("What is the area of the rectangle in square cm?", area, sides,
           f"Area = {side_w} × {side_h} = {area}."),
        qa("How many cm longer is the longer side of the rectangle than the shorter side?",
           longer - shorter, sides, f"{longer} - {shorter} = {longer - shorter}."),
    ]
    facts = {"shape": "rectangle", "width": side_w, "height": side_h}
    return Figure(image, facts, pick_questions(rng, questions))


def draw_right_triangle(rng: random.Random, size: tuple[int, int]) -> Figure:
    base, leg, hypotenuse = rng.choice(PYTHAGOREAN_TRIPLES)
    if rng.random() < 0.5:
        base, leg = leg, base
    image, draw = blank_canvas(size)
    width, height = size
    face = font_for(size)
    unit = min(0.7 * width / base, 0.7 * height / leg)
    corner = ((width - unit * base) / 2, (height + unit * leg) / 2)
    right_end, top = (corner[0] + unit * base, corner[1]), (corner[0], corner[1] - unit * leg)
    draw.polygon([corner, right_end, top], outline=INK, fill=(230, 245, 225), width=2)
    mark = min(size) / 20
    draw.rectangle([corner[0], corner[1] - mark, corner[0] + mark, corner[1]], outline=INK)
    text_at(draw, ((corner[0] + right_end[0]) / 2, corner[1] + 0.06 * height), str(base), face)
    text_at(draw, (corner[0] - 0.02 * width, (corner[1] + top[1]) / 2), str(leg), face,
            align="right")
    middle = ((right_end[0] + top[0]) / 2, (right_end[1] + top[1]) / 2)
    text_at(draw, (middle[0] + 0.05 * width, middle[1] - 0.05 * height), "?", face)
    legs = f"The legs of the right triangle are {base} and {leg}."
    square_sum = base**2 + leg**2
    pythagoras = (f"{base}² + {leg}² = {base**2} + {leg**2} = {square_sum}, "
                  f"and the square root of {square_sum} is {hypotenuse}.")
    area = base * leg // 2
    questions = [
        qa("What is the length of the side marked ?", hypotenuse, legs, pythagoras),
        qa("What is the perimeter of the triangle?", base + leg + hypotenuse, legs, pythagoras,
           f"{base} + {leg} + {hypotenuse} = {base + leg + hypotenuse}."),
        qa("What is the area of the triangle?", area, legs,
           f"Area = {base} × {leg} ÷ 2 = {area}."),
    ]
    facts = {"shape": "right_triangle", "legs": [base, leg], "hypotenuse": hypotenuse}
    return Figure(image, facts, pick_questions(rng, questions))


def draw_triangle_angles(rng: random.Random, size: tuple[int, int]) -> Figure:
    first = rng.randint(30, 100)
    second = rng.randint(30, 150 - first)
    third = 180 - first - second
    image, draw = blank_canvas(size)
    face = font_for(size)
    vertices = _fit_points(_triangle_from_angles(first, second), size)
    draw.polygon(vertices, outline=INK, fill=(250, 238, 220), width=2)
    centroid = (sum(x for x, _ in vertices) / 3, sum(y for _, y in vertices) / 3)
    for (x, y), text in zip(vertices, (f"{first}°", f"{second}°", "?"), strict=True):
        text_at(draw, (x + 0.35 * (centroid[0] - x), y + 0.35 * (centroid[1] - y)), text, face)
    known = f"Two angles of the triangle are {first}° and {second}°."
    missing = f"The angles of a triangle add up to 180°, so 180 - {first} - {second} = {third}."
    largest = max(first, second, third)
    kind = "right" if largest == 90 else "obtuse" if largest > 90 else "acute"
    questions = [
        qa("What is the measure, in degrees, of the angle marked ?", third, known, missing),
        qa("What is the largest angle of the triangle, in degrees?", largest, known, missing,
           f"The angles are {first}°, {second}° and {third}°; the largest is {largest}°."),
        qa("Is the triangle acute, right or obtuse?", kind, known, missing,
           f"The largest angle is {largest}°, so the triangle is {kind}."),
    ]
    facts = {"shape": "triangle", "angles": [first, second, third]}
    return Figure(image, facts, pick_questions(rng, questions))


def draw_circle(rng: random.Random, size: tuple[int, int]) -> Figure:
    radius = rng.randint(2, 15)
    sector = rng.choice([angle for angle in range(30, 331, 10) if angle != 180])
    image, draw = blank_canvas(size)
    width, height = size
    face = font_for(size)
    pixels = 0.38 * min(width, height)
    cx, cy = width / 2, height / 2
    box = [cx - pixels, cy - pixels, cx + pixels, cy + pixels]
    draw.pieslice(box, -90, -90 + sector, fill=PALETTE[4])
    draw.ellipse(box, outline=INK, width=2)
    middle = math.radians(-90 + sector / 2)
    text_at(draw, (cx + 0.55 * pixels * math.cos(middle), cy + 0.55 * pixels * math.sin(middle)),
            f"{sector}°", face)
    free = math.radians(-90 + sector + (360 - sector) / 2)  # the radius lies in the blank part
    end = (cx + pixels * math.cos(free), cy + pixels * math.sin(free))
    draw.line([(cx, cy), end], fill=INK, width=2)
    beside = 0.09 * min(width, height)  # off the line, on its perpendicular
    text_at(draw, ((cx + end[0]) / 2 - beside * math.sin(free),
                   (cy + end[1]) / 2 + beside * math.cos(free)), f"r = {radius}", face)
    questions = [
        qa("What is the diameter of the circle?", 2 * radius,
           f"The radius is marked as {radius}.", f"The diameter is 2 × {radius} = {2 * radius}."),
        qa("What is the angle, in degrees, of the unshaded part of the circle?", 360 - sector,
           f"The shaded sector's angle is {sector}°.",
           f"A full turn is 360°, so 360 - {sector} = {360 - sector}."),
    ]
    facts = {"shape": "circle", "radius": radius, "shaded_angle": sector}
    return Figure(image, facts, pick_questions(rng, questions))


def _triangle_from_angles(first: int, second: int) -> list[Point]:
    """Unit base with `first` at its left end and `second` at its right (law of sines); y up."""
    a, b = math.radians(first), math.radians(second)
    side = math.sin(b) / math.sin(math.pi - a - b)
    return [(0.0, 0.0), (1.0, 0.0), (side * math.cos(a), side * math.sin(a))]


def _fit_points(points: list[Point], size: tuple[int, int]) -> list[Point]:
    """Scale and centre points (y up) into the canvas (y down) with a margin."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    scale = min(0.8 * size[0] / span_x, 0.75 * size[1] / span_y)
    offset_x = (size[0] - scale * span_x) / 2 - scale * min(xs)
    offset_y = (size[1] + scale * span_y) / 2 + scale * min(ys)
    return [(offset_x + scale * x, offset_y - scale * y) for x, y in points]
