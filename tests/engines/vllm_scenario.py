"""Drives one real VLLMEngine through the scenarios test_vllm_engine.py checks, and writes what
it saw to JSON. It runs as its own process: vLLM starts its workers with spawn (which needs
this `__main__` guard) and lowers the process's torch threads, neither welcome inside pytest.

    python tests/engines/vllm_scenario.py MODEL_DIR WORK_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from ireasoner.config import LoraConfig, RolloutConfig  # noqa: E402
from ireasoner.engines.base import AdapterRef, GenerationRequest, SamplingSpec  # noqa: E402
from ireasoner.model.warmup import TINY_SOLVER
from ireasoner.prompts import solver_text  # noqa: E402

MIN_PIXELS, MAX_PIXELS = 56 * 56, 112 * 112  # tests/conftest.py's budget for the tiny model
LORA_RANK = 8
LONG_TOKENS = 96  # room for the warmed-up model to finish its answer and stop
SOLVER = "solver"
QUESTIONS = ("What is the largest value shown in the image?", "How many bars are there?")


def scenario_images(work_dir: Path) -> list[Image.Image]:
    """Two bar charts, saved so that the test can give the very same pixels to transformers."""
    images = []
    for index, heights in enumerate(([30, 70, 50], [60, 20])):
        image = Image.new("RGB", (96, 84), "white")
        draw = ImageDraw.Draw(image)
        for bar, height in enumerate(heights):
            left = 10 + 25 * bar
            draw.rectangle([left, 84 - height, left + 15, 83], fill=("red", "blue", "green")[bar])
        image.save(work_dir / f"image{index}.png")
        images.append(image)
    return images


def save_solver_adapter(model_dir: Path, out_dir: Path, weight_seed: int) -> Path:
    """A PEFT-saved solver adapter with random (non-zero) LoRA weights, as the trainer's
    save_pretrained writes it; returns the directory holding adapter_config.json."""
    from transformers import AutoModelForImageTextToText

    from ireasoner.policy.adapters import attach_adapters

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    policy = attach_adapters(model, LoraConfig(rank=LORA_RANK, alpha=16.0, dropout=0.0))
    generator = torch.Generator().manual_seed(weight_seed)
    for name, param in policy.named_parameters():
        if f".{SOLVER}." in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.5
    policy.save_pretrained(out_dir, selected_adapters=[SOLVER])
    return out_dir / SOLVER


def rows(batches) -> list[list[dict]]:
    return [[asdict(completion) for completion in batch] for batch in batches]


def run(model_dir: Path, work_dir: Path) -> dict:
    from ireasoner.engines.vllm_engine import VLLMEngine
    from ireasoner.model.loading import load_processor

    images = scenario_images(work_dir)
    adapter_v1 = save_solver_adapter(model_dir, work_dir / "adapter_v1", weight_seed=1)
    adapter_v2 = save_solver_adapter(model_dir, work_dir / "adapter_v2", weight_seed=2)
    processor = load_processor(str(model_dir), MIN_PIXELS, MAX_PIXELS)
    requests = [
        GenerationRequest(image, solver_text(TINY_SOLVER, question), seed=100 + i)
        for i, (image, question) in enumerate(zip(images, QUESTIONS, strict=True))
    ]
    sample = SamplingSpec(n=5, temperature=1.0, top_p=1.0, max_new_tokens=24)
    greedy = SamplingSpec(n=2, temperature=0.0, top_p=1.0, max_new_tokens=16)
    short = SamplingSpec(n=3, temperature=1.0, top_p=1.0, max_new_tokens=3)
    long_greedy = SamplingSpec(n=1, temperature=0.0, top_p=1.0, max_new_tokens=LONG_TOKENS)
    out: dict = {"adapters": {"v1": str(adapter_v1), "v2": str(adapter_v2)}}

    started = time.perf_counter()
    engine = VLLMEngine(str(model_dir), processor, RolloutConfig(max_lora_rank=LORA_RANK), seed=0)
    out["start_seconds"] = time.perf_counter() - started
    out["sleep_enabled"] = engine.sleep_enabled

    timed = time.perf_counter()
    out["base_sample"] = rows(engine.generate(requests, sample, None))
    out["first_generate_seconds"] = time.perf_counter() - timed
    out["base_sample_again"] = rows(engine.generate(requests, sample, None))
    out["base_short"] = rows(engine.generate(requests, short, None))
    out["base_greedy"] = rows(engine.generate(requests, greedy, None))
    out["base_greedy_long"] = rows(engine.generate(requests, long_greedy, None))

    v1 = AdapterRef(SOLVER, str(adapter_v1), version=1)
    out["v1_greedy"] = rows(engine.generate(requests, greedy, v1))
    out["v1_lora_id"] = engine.lora_id(v1)
    # The trainer overwrites the adapter in place. The same version must not be reloaded; a
    # bumped version must be, with the new weights.
    for weights in adapter_v2.iterdir():
        (adapter_v1 / weights.name).write_bytes(weights.read_bytes())
    out["v1_greedy_after_overwrite"] = rows(engine.generate(requests, greedy, v1))
    out["v1_lora_id_after_overwrite"] = engine.lora_id(v1)
    v2 = AdapterRef(SOLVER, str(adapter_v1), version=2)
    timed = time.perf_counter()
    out["v2_greedy"] = rows(engine.generate(requests, greedy, v2))
    out["swap_generate_seconds"] = time.perf_counter() - timed
    out["v2_lora_id"] = engine.lora_id(v2)
    out["v1_lora_id_after_swap"] = engine.lora_id(v1)
    out["v2_sample"] = rows(engine.generate(requests, sample, v2))

    engine.sleep()  # a no-op where vLLM has no sleep mode (CPU)
    engine.wake()
    out["after_wake_sample"] = rows(engine.generate(requests, sample, None))
    engine.close()
    return out


def main() -> None:
    model_dir, work_dir = Path(sys.argv[1]), Path(sys.argv[2])
    work_dir.mkdir(parents=True, exist_ok=True)
    results = run(model_dir, work_dir)
    (work_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")


if __name__ == "__main__":
    main()
