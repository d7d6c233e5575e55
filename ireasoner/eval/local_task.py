"""The local benchmark `ireasoner_synth`: labelled synthetic images, no download.

`build_local_task_data` draws images with the project's generator and writes one Parquet file
(PNG bytes, prompt, exact answer per row); `write_local_task` writes the lmms-eval task YAML that
points at it, into a directory passed to lmms-eval as `--include_path`.
"""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path

import pyarrow as pa

from ireasoner.config import SolverConfig
from ireasoner.data.synthetic import generate_samples
from ireasoner.prompts import solver_text
from storage.atomic import atomic_write_bytes, atomic_write_parquet

LOCAL_TASK = "ireasoner_synth"
DATA_FILE_NAME = f"{LOCAL_TASK}.parquet"
_DATA_PLACEHOLDER = "__DATA_FILE__"

LOCAL_TASK_SCHEMA = pa.schema([
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("question", pa.string(), nullable=False),
    pa.field("answer", pa.string(), nullable=False),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("image", pa.binary(), nullable=False),  # PNG
])


def build_local_task_data(
    out_dir: Path,
    n: int,
    seed: int = 0,
    size: tuple[int, int] = (320, 240),
    solver: SolverConfig | None = None,
) -> Path:
    """Write `n` rows (one question per image) to `<out_dir>/ireasoner_synth.parquet`.

    The i-th image asks its (i mod k)-th question, so every question template appears.
    """
    if n < 1:
        raise ValueError(f"the local task needs at least one sample, got n={n}")
    solver = solver or SolverConfig()
    rows: dict[str, list] = {name: [] for name in LOCAL_TASK_SCHEMA.names}
    for index, sample in enumerate(generate_samples(n, seed=seed, size=size)):
        qa = sample.qa[index % len(sample.qa)]
        rows["image_id"].append(sample.image_id)
        rows["kind"].append(sample.kind)
        rows["question"].append(qa.question)
        rows["answer"].append(qa.answer)
        rows["prompt"].append(solver_text(solver, qa.question))
        rows["image"].append(_png_bytes(sample.image))
    table = pa.table(rows, schema=LOCAL_TASK_SCHEMA)
    return atomic_write_parquet(Path(out_dir) / DATA_FILE_NAME, table)


def write_local_task(include_dir: Path, data_file: Path) -> Path:
    """Write `<include_dir>/ireasoner_synth/ireasoner_synth.yaml` reading `data_file`."""
    return write_task_yaml(LOCAL_TASK, "local", include_dir, data_file)


def write_task_yaml(task: str, kind: str, include_dir: Path, data_file: Path) -> Path:
    """`<include_dir>/<task>/<task>.yaml` from the package's `ireasoner.eval.tasks.<task>`
    template, reading `data_file` (the project's tasks whose data is built per evaluation)."""
    data_file = Path(data_file).resolve()
    if not data_file.is_file():
        raise FileNotFoundError(f"{kind} task data not found: {data_file}")
    template = resources.files(f"ireasoner.eval.tasks.{task}").joinpath(f"{task}.yaml.in")
    # JSON string syntax is valid YAML double-quoted syntax: any path survives quoting.
    text = template.read_text(encoding="utf-8").replace(_DATA_PLACEHOLDER, json.dumps(str(data_file)))
    yaml_path = Path(include_dir) / task / f"{task}.yaml"
    atomic_write_bytes(yaml_path, text.encode("utf-8"))
    return yaml_path


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
