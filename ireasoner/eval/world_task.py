"""The local benchmark `ireasoner_world`: the miniature world's held-out images (never trained
on), each asked its counting question 5 times at temperature 1 and scored pass@1 / maj@5.

`build_world_task_data` writes one Parquet file (PNG bytes, Solver prompt, exact answer per
row); `write_world_task` writes the lmms-eval task YAML that points at it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ireasoner.config import SolverConfig
from ireasoner.data.world import HELD_OUT_SIZE, world_samples
from ireasoner.eval.local_task import LOCAL_TASK_SCHEMA, _png_bytes, write_task_yaml
from ireasoner.prompts import solver_text
from storage.atomic import atomic_write_parquet

WORLD_TASK = "ireasoner_world"
WORLD_TASK_TEMPERATURE = 1.0  # sampled: pass@1 and maj@5 need 5 different draws


def build_world_task_data(out_dir: Path, solver: SolverConfig, n: int = HELD_OUT_SIZE,
                          seed: int = 0) -> Path:
    """The first `n` held-out images; the i-th asks its (i mod 6)-th colour pair, as the world
    model's own report does (ireasoner.model.world.question_of)."""
    rows: dict[str, list] = {name: [] for name in LOCAL_TASK_SCHEMA.names}
    for index, sample in enumerate(world_samples("held_out", n, seed)):
        item = sample.qa[index % len(sample.qa)]
        rows["image_id"].append(sample.image_id)
        rows["kind"].append("world")
        rows["question"].append(item.question)
        rows["answer"].append(item.answer)
        rows["prompt"].append(solver_text(solver, item.question))
        rows["image"].append(_png_bytes(sample.image))
    table = pa.table(rows, schema=LOCAL_TASK_SCHEMA)
    return atomic_write_parquet(Path(out_dir) / f"{WORLD_TASK}.parquet", table)


def write_world_task(include_dir: Path, data_file: Path) -> Path:
    return write_task_yaml(WORLD_TASK, "world", include_dir, data_file)
