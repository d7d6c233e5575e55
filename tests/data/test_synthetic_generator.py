from __future__ import annotations

import io
import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from ireasoner.data.figures.common import PALETTE
from ireasoner.data.synthetic import (
    KINDS,
    SAMPLES_FILE,
    SyntheticSample,
    generate_samples,
    read_synthetic,
    synth_command,
    write_synthetic,
)

SHORT_ANSWER = re.compile(r"^(\d+|[A-Za-z]+)$")


def png_bytes(sample: SyntheticSample) -> bytes:
    buffer = io.BytesIO()
    sample.image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def samples() -> list[SyntheticSample]:
    """Three of each kind."""
    return generate_samples(3 * len(KINDS), seed=11)


def of_kind(samples: list[SyntheticSample], kind: str) -> list[SyntheticSample]:
    return [s for s in samples if s.kind == kind]


def option_letter(question: str, label: str) -> str:
    return re.search(rf"\(([A-D])\) {label}\b", question).group(1)


def test_same_seed_gives_the_same_bytes():
    first, second = generate_samples(8, seed=4), generate_samples(8, seed=4)
    assert [png_bytes(s) for s in first] == [png_bytes(s) for s in second]
    assert [(s.facts, s.qa) for s in first] == [(s.facts, s.qa) for s in second]


def test_a_shorter_run_is_a_prefix_of_a_longer_one():
    longer, shorter = generate_samples(10), generate_samples(5)
    assert longer[:5] == shorter
    assert [png_bytes(s) for s in longer[:5]] == [png_bytes(s) for s in shorter]


def test_different_seeds_draw_different_samples():
    one, other = generate_samples(8, seed=0), generate_samples(8, seed=1)
    assert sum(a.facts != b.facts for a, b in zip(one, other, strict=True)) >= 6
    assert png_bytes(one[0]) != png_bytes(other[0])


def test_every_kind_is_produced(samples):
    assert {s.kind for s in samples} == set(KINDS)
    assert len({s.image_id for s in samples}) == len(samples)


def test_images_are_rgb_of_the_requested_size():
    for sample in generate_samples(len(KINDS), size=(200, 150)):
        assert sample.image.mode == "RGB" and sample.image.size == (200, 150)


def test_each_sample_has_two_to_four_short_answers_with_numbered_steps(samples):
    for sample in samples:
        assert 2 <= len(sample.qa) <= 4
        assert len({q.question for q in sample.qa}) == len(sample.qa)
        for item in sample.qa:
            assert SHORT_ANSWER.match(item.answer), item
            assert item.steps and all(step.startswith(f"Step {k}: ")
                                      for k, step in enumerate(item.steps, start=1))


def test_facts_are_json_serialisable(samples):
    for sample in samples:
        assert json.loads(json.dumps(sample.facts)) == sample.facts


def test_chart_values_are_distinct_and_pie_shares_sum_to_100(samples):
    for sample in of_kind(samples, "bar_chart") + of_kind(samples, "line_chart"):
        assert len(set(sample.facts["values"])) == len(sample.facts["values"])
    for sample in of_kind(samples, "pie_chart"):
        shares = sample.facts["percentages"]
        assert sum(shares) == 100 and len(set(shares)) == len(shares) and min(shares) >= 5


def test_largest_and_smallest_answers_name_the_extreme_category():
    checked = 0
    for sample in generate_samples(16 * len(KINDS), seed=2):
        if sample.kind not in ("bar_chart", "pie_chart", "line_chart"):
            continue
        values = sample.facts.get("values") or sample.facts["percentages"]
        labels = sample.facts["labels"]
        for item in sample.qa:
            for word, pick in (("largest", max), ("smallest", min)):
                if f"has the {word} value" in item.question:
                    expected = labels[values.index(pick(values))]
                    if "Choices:" in item.question:
                        expected = option_letter(item.question, expected)
                    assert item.answer == expected
                    checked += 1
    assert checked >= 10


def test_sum_answers_add_the_named_values():
    checked = 0
    for sample in generate_samples(12 * len(KINDS), seed=3):
        if sample.kind != "bar_chart":
            continue
        value_of = dict(zip(sample.facts["labels"], sample.facts["values"], strict=True))
        for item in sample.qa:
            named = re.match(r"What is the sum of the values of (\w+) and (\w+)\?", item.question)
            if named:
                assert int(item.answer) == value_of[named[1]] + value_of[named[2]]
                checked += 1
    assert checked >= 3


def test_geometry_answers_follow_from_the_marked_measures(samples):
    for sample in of_kind(samples, "rectangle"):
        w, h = sample.facts["width"], sample.facts["height"]
        expected = {"perimeter": 2 * (w + h), "area": w * h, "longer": abs(w - h)}
        for item in sample.qa:
            key = next(k for k in expected if k in item.question)
            assert int(item.answer) == expected[key]
    for sample in of_kind(samples, "right_triangle"):
        (a, b), c = sample.facts["legs"], sample.facts["hypotenuse"]
        assert a * a + b * b == c * c
        answers = {"marked": c, "perimeter": a + b + c, "area": a * b // 2}
        for item in sample.qa:
            key = next(k for k in answers if k in item.question)
            assert int(item.answer) == answers[key]
    for sample in of_kind(samples, "triangle"):
        angles = sample.facts["angles"]
        assert sum(angles) == 180
        marked = [q for q in sample.qa if "marked ?" in q.question]
        assert all(int(q.answer) == angles[2] for q in marked)
    for sample in of_kind(samples, "circle"):
        answers = {q.question: q.answer for q in sample.qa}
        assert answers["What is the diameter of the circle?"] == str(2 * sample.facts["radius"])


def test_table_answers_read_the_drawn_cells(samples):
    for sample in of_kind(samples, "table"):
        rows, cells = sample.facts["rows"], sample.facts["cells"]
        first, second = sample.facts["columns"]
        for item in sample.qa:
            if "total of the" in item.question:
                assert int(item.answer) == sum(cells[second])
            elif "highest value" in item.question:
                expected = rows[cells[first].index(max(cells[first]))]
                if "Choices:" in item.question:
                    expected = option_letter(item.question, expected)
                assert item.answer == expected


def test_drawn_bar_heights_rank_like_the_recorded_values(samples):
    for sample in of_kind(samples, "bar_chart"):
        pixels = np.asarray(sample.image)
        tops = []
        for index in range(len(sample.facts["values"])):
            rows = np.where((pixels == PALETTE[index]).all(axis=2).any(axis=1))[0]
            tops.append(rows.min())
        by_height = sorted(range(len(tops)), key=lambda i: tops[i])  # smallest y = tallest bar
        by_value = sorted(range(len(tops)), key=lambda i: -sample.facts["values"][i])
        assert by_height == by_value


def test_drawn_pie_slice_areas_rank_like_the_percentages(samples):
    for sample in of_kind(samples, "pie_chart"):
        pixels = np.asarray(sample.image)
        areas = [(pixels == PALETTE[i]).all(axis=2).sum()
                 for i in range(len(sample.facts["percentages"]))]
        shares = sample.facts["percentages"]
        assert np.argsort(areas).tolist() == np.argsort(shares).tolist()


def test_write_then_read_gives_back_the_samples(tmp_path):
    out = write_synthetic(tmp_path / "synthetic", 5, seed=7, size=(160, 120))
    table = pq.read_table(out / SAMPLES_FILE)
    assert table.column_names == ["image_id", "kind", "file", "facts", "qa"]
    assert all((out / name).is_file() for name in table.column("file").to_pylist())
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    generated = generate_samples(5, seed=7, size=(160, 120))
    assert read_synthetic(out) == generated


def test_writing_twice_gives_identical_pngs(tmp_path):
    first = write_synthetic(tmp_path / "a", 3, seed=1)
    second = write_synthetic(tmp_path / "b", 3, seed=1)
    names = sorted(p.name for p in (first / "images").iterdir())
    assert len(names) == 3
    assert all((first / "images" / n).read_bytes() == (second / "images" / n).read_bytes()
               for n in names)


def test_read_synthetic_of_an_empty_directory_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=SAMPLES_FILE):
        read_synthetic(tmp_path)


def test_synth_command_writes_and_reports(tmp_path, capsys):
    out = synth_command(n=9, out=str(tmp_path / "s"), seed=0, size=(160, 120))
    assert len(read_synthetic(out)) == 9
    printed = capsys.readouterr().out
    assert "9 synthetic samples" in printed and "bar_chart 2" in printed


@pytest.mark.parametrize(("n", "size"), [(-1, (320, 240)), (2, (32, 240))])
def test_bad_arguments_are_refused(n, size):
    with pytest.raises(ValueError):
        generate_samples(n, size=size)
