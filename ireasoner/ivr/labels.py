"""Question and answer labels per image for `ivr.labels: dataset`, keyed by the image ids that
`ireasoner.data.sources.load_images` gives the same source."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow.parquet as pq

from ireasoner.config import DataConfig, IVRConfig
from ireasoner.data.sources import ID_COLUMN, DataSourceError
from ireasoner.data.synthetic import generate_samples


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
    if data.source == "parquet":
        return _parquet_labels(Path(str(data.path)), ivr)
    raise DataSourceError(f"ivr.labels 'dataset' needs data.source 'parquet' or 'synthetic', "
                          f"not {data.source!r}")


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
