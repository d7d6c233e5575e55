"""The SFT cold start (spec §6): fine-tune the Solver adapter on reasoning traces before RL.

Traces are a Parquet file with columns `image` (bytes, or HF's {"bytes", "path"} struct),
`question` and `response` (the assistant's full text, e.g. `<desc>…</desc><think>…</think>
\\boxed{…}`); the prompt is `solver.prompt` with the question, as the RL stages render it.
Rows whose image cannot be used or whose text is missing are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from peft import PeftModel

from ireasoner.config import Config
from ireasoner.data.images import ImageLimits, ImageRejected, load_image
from ireasoner.model.loading import Backbone
from ireasoner.policy.adapters import use_adapter
from ireasoner.policy.sft import SFTExample, SFTStats, sft_train
from ireasoner.prompts import render, solver_text
from ireasoner.seeding import derive_seed

TRACE_COLUMNS = ("image", "question", "response")


@dataclass
class Traces:
    examples: list[SFTExample]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count


def read_traces(path: str | Path, cfg: Config, backbone: Backbone) -> Traces:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SFT traces {path} not found (ivr.sft_data)")
    missing = [c for c in TRACE_COLUMNS if c not in pq.read_schema(path).names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; need {list(TRACE_COLUMNS)}")
    limits = ImageLimits.from_config(cfg.data)
    traces = Traces(examples=[])
    for row in pq.read_table(path, columns=list(TRACE_COLUMNS)).to_pylist():
        cell = row["image"]
        data = cell.get("bytes") if isinstance(cell, dict) else cell
        if not row["question"] or not row["response"] or data is None:
            traces.skipped["missing_field"] = traces.skipped.get("missing_field", 0) + 1
            continue
        try:
            image = load_image(data, limits)  # within data.pixel_budget
        except ImageRejected as err:
            traces.skipped[err.reason] = traces.skipped.get(err.reason, 0) + 1
            continue
        prompt = render(backbone.processor, solver_text(cfg.solver, row["question"]))
        traces.examples.append(SFTExample(image=image, prompt=prompt, response=row["response"]))
    return traces


def train_solver_adapter(policy: PeftModel, backbone: Backbone, traces: Traces, cfg: Config
                         ) -> SFTStats:
    """ivr.sft_epochs passes over the traces; only the Solver adapter's weights train."""
    use_adapter(policy, "solver")
    return sft_train(policy, backbone.processor, traces.examples, epochs=cfg.ivr.sft_epochs,
                     lr=cfg.ivr.sft_lr, micro_batch_size=cfg.optimization.micro_batch_size,
                     seed=derive_seed(cfg.trainer.seed, 0, "solver"),
                     precision=cfg.optimization.precision)
