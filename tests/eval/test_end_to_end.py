"""The local task through lmms-eval itself, on the tiny model, on CPU."""

import json
import time

import pytest

from ireasoner.config import EvaluationConfig
from ireasoner.eval import evaluate_checkpoint, read_results


@pytest.mark.slow
def test_local_task_runs_end_to_end_and_a_missing_dataset_fails_alone(
        tiny_model_path, tiny_model_config, tmp_path):
    empty_cache = tmp_path / "hf-cache"
    empty_cache.mkdir()
    cfg = EvaluationConfig(limit=3, max_new_tokens=24, dataset_cache=str(empty_cache))
    start = time.perf_counter()
    result = evaluate_checkpoint(
        str(tiny_model_path), ["chartqa", "ireasoner_synth"], cfg, tmp_path / "eval", "tiny",
        backend="auto", device="cpu",
        pixel_budget=(tiny_model_config.min_pixels, tiny_model_config.max_pixels))
    print(f"local-task evaluation wall time: {time.perf_counter() - start:.1f} s")

    rows = read_results(result.results_path).to_pylist()
    local = {row["metric"]: row for row in rows if row["task"] == "ireasoner_synth"}
    assert set(local) == {"exact_match", "answer_tagged"}
    for row in local.values():
        assert row["status"] == "ok" and row["samples"] == 3 and 0.0 <= row["value"] <= 1.0
    [chartqa] = [row for row in rows if row["task"] == "chartqa"]
    assert chartqa["status"] == "failed"
    assert "'lmms-lab-encoder/ChartQA'" in chartqa["error"]
    assert not (tmp_path / "eval" / "lmms" / "chartqa").exists()  # never launched

    [samples_file] = (tmp_path / "eval" / "lmms" / "ireasoner_synth").rglob("*_samples_*.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert len(samples) == 3 and all("exact_match" in s for s in samples)
