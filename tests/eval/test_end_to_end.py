"""The local task through lmms-eval itself, on the tiny model, on CPU."""

import json
import time
from pathlib import Path

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


def mathvista_rows(datasets, images):
    """Three testmini-shaped MathVista rows: multiple choice, integer, float."""
    features = datasets.Features({
        "pid": datasets.Value("string"), "question": datasets.Value("string"),
        "image": datasets.Value("string"), "decoded_image": datasets.Image(),
        "choices": datasets.Sequence(datasets.Value("string")), "unit": datasets.Value("string"),
        "precision": datasets.Value("float64"), "answer": datasets.Value("string"),
        "question_type": datasets.Value("string"), "answer_type": datasets.Value("string"),
        "metadata": {"split": datasets.Value("string"), "source": datasets.Value("string")},
        "query": datasets.Value("string")})
    return datasets.Dataset.from_dict({
        "pid": ["1", "2", "3"], "question": ["Which bar is red?", "How many bars?", "Ratio?"],
        "image": ["images/1.jpg", "images/2.jpg", "images/3.jpg"], "decoded_image": images,
        "choices": [["left", "middle", "right"], None, None], "unit": [None, None, None],
        "precision": [None, None, 1.0], "answer": ["left", "3", "0.5"],
        "question_type": ["multi_choice", "free_form", "free_form"],
        "answer_type": ["text", "integer", "float"],
        "metadata": [{"split": "testmini", "source": "synthetic"}] * 3,
        "query": ["q1", "q2", "q3"]}, features=features)


def mathverse_rows(datasets, images):
    """Three testmini-shaped MathVerse rows: one multiple choice, two free form."""
    text = datasets.Value("string")
    features = datasets.Features({
        "sample_index": text, "problem_index": text, "problem_version": text,
        "question": text, "image": datasets.Image(), "answer": text, "question_type": text,
        "metadata": {"split": text, "subfield": text}, "query_wo": text, "query_cot": text,
        "question_for_eval": text})
    return datasets.Dataset.from_dict({
        "sample_index": ["1", "2", "3"], "problem_index": ["1", "2", "3"],
        "problem_version": ["Text Lite"] * 3, "question": ["q1", "q2", "q3"], "image": images,
        "answer": ["B", "4.5", "\\sqrt{12}"],
        "question_type": ["multi-choice", "free-form", "free-form"],
        "metadata": [{"split": "testmini", "subfield": "Area"}] * 3,
        "query_wo": ["Which? Choices: A:1 B:2", "Find x.", "Find the side."],
        "query_cot": ["", "", ""], "question_for_eval": ["q1", "q2", "q3"]}, features=features)


@pytest.mark.slow
def test_rule_scored_math_tasks_run_end_to_end_offline_without_a_key(
        tiny_model_path, tiny_model_config, tiny_images, cache_like_the_hub, tmp_path,
        monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cache = tmp_path / "hf-datasets"
    cache_like_the_hub(cache, "AI4Math/MathVista", "default",
                       {"testmini": mathvista_rows(datasets, tiny_images)})
    cache_like_the_hub(cache, "CaraJ/MathVerse-lmmseval", "testmini",
                       {"testmini": mathverse_rows(datasets, tiny_images)})
    cfg = EvaluationConfig(max_new_tokens=16, dataset_cache=str(cache))
    tasks = ["mathvista_testmini_rules", "mathverse_testmini_rules"]
    result = evaluate_checkpoint(
        str(tiny_model_path), tasks, cfg, tmp_path / "eval", "tiny", backend="auto",
        device="cpu", pixel_budget=(tiny_model_config.min_pixels, tiny_model_config.max_pixels))

    rows = read_results(result.results_path).to_pylist()
    assert not result.failed_tasks, rows
    metrics = {(row["task"], row["metric"]): row for row in rows}
    assert set(metrics) == {("mathvista_testmini_rules", "rule_accuracy"),
                            ("mathvista_testmini_rules", "answer_read"),
                            ("mathverse_testmini_rules", "rule_accuracy")}
    assert all(row["samples"] == 3 and 0.0 <= row["value"] <= 1.0 for row in rows)


@pytest.mark.slow
def test_the_world_task_samples_five_answers_per_question_through_lmms_eval(tmp_path,
                                                                            monkeypatch):
    from ireasoner.model.world import ensure_world_model, world_solver_config

    cfg = EvaluationConfig(limit=4, max_new_tokens=80, batch_size=20)
    # A relative output folder, as `--run-dir runs/x` gives: lmms-eval runs inside it, so every
    # path handed to it must be absolute (its task was "not found" when they were not).
    monkeypatch.chdir(tmp_path)
    result = evaluate_checkpoint(str(ensure_world_model(0)), ["ireasoner_world"], cfg,
                                 Path("eval"), "world", backend="transformers",
                                 device="cpu", pixel_budget=(3136, 12544),
                                 solver=world_solver_config())
    rows = {row["metric"]: row for row in read_results(result.results_path).to_pylist()}
    assert set(rows) == {"pass_at_1,samples", "maj_at_5,samples", "agreement,samples"}
    assert all(r["status"] == "ok" and r["samples"] == 4 for r in rows.values())
    [samples_file] = (tmp_path / "eval" / "lmms" / "ireasoner_world").rglob("*_samples_*.jsonl")
    distinct = []
    for line in samples_file.read_text().splitlines():
        responses = json.loads(line)["resps"]
        if isinstance(responses[0], list):  # one request's repeats, nested
            [responses] = responses
        assert len(responses) == 5  # five sampled responses per question
        distinct.append(len(set(responses)))
    # Sampled, not five copies of a greedy answer (the world model is sure of some answers).
    assert max(distinct) > 1, distinct
