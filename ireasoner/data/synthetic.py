"""Labelled synthetic images of the kinds the paper trains on (charts, geometry, tables).

Sample i depends only on (seed, i), so a longer run extends a shorter one byte for byte. Each
sample carries the facts it was drawn from and 2–4 questions with exact short answers and
step-by-step reasoning written from those facts: a format warm-up for the Solver and a small
labelled benchmark.
"""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ireasoner.data.figures.charts import draw_bar_chart, draw_line_chart, draw_pie_chart
from ireasoner.data.figures.common import Drawer, SyntheticQA
from ireasoner.data.figures.geometry import (
    draw_circle,
    draw_rectangle,
    draw_right_triangle,
    draw_triangle_angles,
)
from ireasoner.data.figures.tables import draw_table
from storage.atomic import atomic_write_bytes, atomic_write_parquet

__all__ = ["KINDS", "SAMPLES_FILE", "SyntheticQA", "SyntheticSample", "generate_samples",
           "read_synthetic", "synth_command", "write_synthetic"]

DRAWERS: dict[str, Drawer] = {
    "bar_chart": draw_bar_chart,
    "line_chart": draw_line_chart,
    "pie_chart": draw_pie_chart,
    "table": draw_table,
    "rectangle": draw_rectangle,
    "right_triangle": draw_right_triangle,
    "triangle": draw_triangle_angles,
    "circle": draw_circle,
}
KINDS = tuple(DRAWERS)
SAMPLES_FILE = "samples.parquet"
IMAGES_DIR = "images"
QA_TYPE = pa.list_(pa.struct([("question", pa.string()), ("answer", pa.string()),
                              ("steps", pa.list_(pa.string()))]))
SAMPLES_SCHEMA = pa.schema([("image_id", pa.string()), ("kind", pa.string()),
                            ("file", pa.string()), ("facts", pa.string()), ("qa", QA_TYPE)])


@dataclass(frozen=True)
class SyntheticSample:
    image_id: str
    kind: str
    image: Image.Image
    facts: dict[str, Any]
    qa: tuple[SyntheticQA, ...]


def generate_samples(n: int, seed: int = 0,
                     size: tuple[int, int] = (320, 240)) -> list[SyntheticSample]:
    """n samples cycling through KINDS (so every kind appears once n >= len(KINDS))."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if min(size) < 64:
        raise ValueError(f"size must be at least 64x64 for legible labels, got {size}")
    return [_sample(seed, index, size) for index in range(n)]


def write_synthetic(out_dir: str | Path, n: int, seed: int = 0,
                    size: tuple[int, int] = (320, 240)) -> Path:
    """Write images/<image_id>.png and samples.parquet under out_dir; return out_dir."""
    out = Path(out_dir)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    rows = []
    for sample in generate_samples(n, seed, size):
        relative = f"{IMAGES_DIR}/{sample.image_id}.png"
        encoded = io.BytesIO()
        sample.image.save(encoded, format="PNG")
        atomic_write_bytes(out / relative, encoded.getvalue())
        rows.append(_row(sample, relative))
    atomic_write_parquet(out / SAMPLES_FILE, pa.Table.from_pylist(rows, schema=SAMPLES_SCHEMA))
    return out


def read_synthetic(out_dir: str | Path) -> list[SyntheticSample]:
    out = Path(out_dir)
    if not (out / SAMPLES_FILE).is_file():
        raise FileNotFoundError(f"{out / SAMPLES_FILE} not found: run write_synthetic first")
    samples = []
    for row in pq.read_table(out / SAMPLES_FILE).to_pylist():
        with Image.open(out / row["file"]) as stored:
            image = stored.convert("RGB")
        qa = tuple(SyntheticQA(q["question"], q["answer"], tuple(q["steps"])) for q in row["qa"])
        samples.append(SyntheticSample(row["image_id"], row["kind"], image,
                                       json.loads(row["facts"]), qa))
    return samples


def synth_command(n: int, out: str, seed: int, size: tuple[int, int]) -> Path:
    """`ireasoner data synth`: write the set and say what was written."""
    out_dir = write_synthetic(out, n, seed, size)
    kinds = Counter(sample_kind(index) for index in range(n))
    summary = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
    print(f"wrote {n} synthetic samples (seed {seed}, {size[0]}x{size[1]}) to "
          f"{out_dir / SAMPLES_FILE} and {out_dir / IMAGES_DIR}/: {summary}")
    return out_dir


def sample_kind(index: int) -> str:
    return KINDS[index % len(KINDS)]


def _sample(seed: int, index: int, size: tuple[int, int]) -> SyntheticSample:
    kind = sample_kind(index)
    # A string seed goes through SHA-512: stable across processes, unlike hash().
    figure = DRAWERS[kind](random.Random(f"ireasoner.synthetic/{seed}/{index}"), size)
    return SyntheticSample(f"synthetic-{seed}-{index:06d}", kind, figure.image, figure.facts,
                           figure.qa)


def _row(sample: SyntheticSample, relative_file: str) -> dict[str, Any]:
    return {
        "image_id": sample.image_id,
        "kind": sample.kind,
        "file": relative_file,
        "facts": json.dumps(sample.facts, sort_keys=True),
        "qa": [{"question": q.question, "answer": q.answer, "steps": list(q.steps)}
               for q in sample.qa],
    }
