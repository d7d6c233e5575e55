"""Question and answer labels per image for `ivr.labels: dataset`, keyed by the image ids that
`ireasoner.data.sources.load_images` gives the same source."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq

from ireasoner.config import DataConfig, IVRConfig
from ireasoner.data.sources import ID_COLUMN, DataSourceError
from ireasoner.data.synthetic import generate_samples
from ireasoner.data.world import world_samples

MANIFESTS = ("manifest.parquet", "manifest.jsonl")
MANIFEST_IMAGE = "image"


@dataclass(frozen=True)
class Label:
    question: str
    answer: str


@lru_cache(maxsize=4)
def load_labels(data: DataConfig, ivr: IVRConfig) -> dict[str, Label]:
    """image_id -> Label. Rows with a null question or answer are left out (their images are
    then skipped and recorded by the stage). Cached: the config sections are frozen."""
    if data.source == "synthetic":
        samples = generate_samples(data.synthetic_count, data.seed)
        return {s.image_id: Label(s.qa[0].question, s.qa[0].answer) for s in samples if s.qa}
    if data.source == "world":
        # One colour pair per image, turn by turn (as the world's benchmark asks them).
        samples = world_samples("train", data.synthetic_count, data.seed)
        return {s.image_id: Label(s.qa[i % len(s.qa)].question, s.qa[i % len(s.qa)].answer)
                for i, s in enumerate(samples)}
    if data.source == "parquet":
        return _parquet_labels(Path(str(data.path)), ivr)
    if data.source == "directory":
        return _manifest_labels(Path(str(data.path)), ivr)
    raise DataSourceError(f"ivr.labels 'dataset' needs data.source 'parquet', 'directory' (with "
                          f"a manifest), 'synthetic' or 'world', not {data.source!r}")


def _manifest_labels(root: Path, ivr: IVRConfig) -> dict[str, Label]:
    """A directory of images labelled by `manifest.parquet` or `manifest.jsonl` in it: one row
    per image, `image` (its path relative to the directory: the directory source's image id)
    and the question and answer columns."""
    found = [root / name for name in MANIFESTS if (root / name).is_file()]
    if not found:
        raise DataSourceError(f"{root} has no label manifest ({' or '.join(MANIFESTS)})")
    manifest = found[0]
    if manifest.suffix == ".parquet":
        rows = pq.read_table(manifest).to_pylist()
    else:
        lines = manifest.read_text(encoding="utf-8").splitlines()
        try:
            rows = [json.loads(line) for line in lines if line.strip()]
        except json.JSONDecodeError as err:
            raise DataSourceError(f"{manifest}: not JSON lines ({err})") from None
    wanted = [MANIFEST_IMAGE, ivr.question_column, ivr.answer_column]
    labels: dict[str, Label] = {}
    for number, row in enumerate(rows, start=1):
        missing = [c for c in wanted if c not in row]
        if missing:
            raise DataSourceError(f"{manifest} row {number}: no {missing}; each row needs {wanted}")
        image = str(row[MANIFEST_IMAGE])
        if PurePosixPath(image).is_absolute() or ".." in PurePosixPath(image).parts:
            raise DataSourceError(f"{manifest} row {number}: image {image!r} is not a path "
                                  "inside the directory (absolute or with '..')")
        question, answer = row[ivr.question_column], row[ivr.answer_column]
        if question is not None and answer is not None:
            labels[image] = Label(str(question), str(answer))
    return labels


def _parquet_labels(root: Path, ivr: IVRConfig) -> dict[str, Label]:
    # The same files, order and row references as ireasoner.data.sources._parquet.
    files = [root] if root.is_file() else sorted(root.rglob("*.parquet"))
    labels: dict[str, Label] = {}
    for file in files:
        schema = pq.read_schema(file)
        wanted = [ivr.question_column, ivr.answer_column]
        missing = [c for c in wanted if c not in schema.names]
        if missing:
            raise DataSourceError(f"{file}: no label column(s) {missing} (ivr.question_column, "
                                  f"ivr.answer_column); columns are {schema.names}")
        columns = wanted + ([ID_COLUMN] if ID_COLUMN in schema.names else [])
        prefix = file.name if file == root else file.relative_to(root).as_posix()
        for row_number, row in enumerate(pq.read_table(file, columns=columns).to_pylist()):
            question, answer = row[ivr.question_column], row[ivr.answer_column]
            if question is None or answer is None:
                continue
            image_id = row.get(ID_COLUMN) or f"{prefix}#{row_number}"
            labels[str(image_id)] = Label(str(question), str(answer))
    return labels
