"""Rollouts through a vLLM OpenAI-compatible server (rollout.engine "vllm_server").

The server runs in its own environment, started here (`rollout.server.url` None) or by the user
anywhere reachable. Every request goes to /v1/chat/completions with the image as a data URL and
asks for token ids and raw per-token log-probs, which `build_completion` turns into the same
`Completion`s the in-process engine gives. Each adapter version is loaded at runtime under its
own name (`solver-v7`) and the version it replaces is unloaded. Before the first rollout the
server's model and its rendering of the prompt are checked against this process's: the update
scores exactly the string `ireasoner.prompts.render` gives.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import torch
from PIL import Image
from transformers import AutoConfig, ProcessorMixin

from ireasoner.config import RolloutConfig
from ireasoner.engines.base import (
    AdapterRef,
    Completion,
    GenerationRequest,
    RolloutEngine,
    SamplingSpec,
)
from ireasoner.engines.completions import build_completion, check_max_repeats, stop_token_ids
from ireasoner.engines.server_process import (
    LOG_FILE,
    ServerError,
    ServerProcess,
    free_port,
    server_command,
    server_env,
    server_python,
    start_server,
)
from ireasoner.engines.vllm_engine import (
    _allowed_ids,
    _generation_config,
    check_adapter_dir,
    engine_args,
)
from ireasoner.prompts import render

log = logging.getLogger(__name__)


def served_name(adapter: AdapterRef, tag: str) -> str:
    """`solver-v7-<tag>`: the tag is the engine's own, so that runs sharing one server never
    take each other's `solver-v7`."""
    return f"{adapter.name}-v{adapter.version}-{tag}"


def launch_server(model_path: str, processor: ProcessorMixin, rollout: RolloutConfig,
                  dtype: str, seed: int, log_dir: Path) -> ServerProcess:
    """Start a server for this model and rollout config and wait until it is healthy."""
    cfg = rollout.server
    port = cfg.port or free_port(cfg.host)
    sleep_mode = sleep_mode_wanted(rollout)
    args = engine_args(model_path, processor, rollout, dtype, seed, "auto", sleep_mode)
    command = server_command(server_python(cfg), args, cfg.host, port, cfg.extra_args)
    url = f"http://{cfg.host}:{port}"
    log.info("starting the vLLM server at %s (log: %s)", url, log_dir / LOG_FILE)
    return start_server(command, server_env(sleep_mode), url, log_dir / LOG_FILE,
                        cfg.startup_timeout_s)


def sleep_mode_wanted(rollout: RolloutConfig) -> bool:
    """A server this process starts on a CUDA machine shares the trainer's GPU: it sleeps
    during the update. vLLM has no sleep mode on CPU."""
    return rollout.sleep_during_update and torch.cuda.is_available()


class VLLMServerEngine(RolloutEngine):
    def __init__(
        self,
        model_path: str,
        processor: ProcessorMixin,
        rollout: RolloutConfig,
        *,
        dtype: str = "auto",
        seed: int = 0,
        log_dir: Path | str = ".",
    ) -> None:
        check_max_repeats(rollout.max_repeats)
        self.model_path = model_path
        self.processor = processor
        self.rollout = rollout
        self.stop_ids = stop_token_ids(_generation_config(model_path), processor.tokenizer)
        self.process: ServerProcess | None = None
        if rollout.server.url is None:
            self.process = launch_server(model_path, processor, rollout, dtype, seed,
                                         Path(log_dir))
            self.url = self.process.url
        else:
            self.url = rollout.server.url
        self.sleep_enabled = self.process is not None and sleep_mode_wanted(rollout)
        self.asleep = False
        self._http = httpx.Client(base_url=self.url, timeout=rollout.server.request_timeout_s)
        self._loaded: dict[str, str] = {}  # adapter name -> served name of its loaded version
        self._tag = uuid.uuid4().hex[:8]
        self._prompt_checked = False
        try:
            vocab_size = self._check_model()
        except BaseException:
            self.close()
            raise
        self.allowed_ids = _allowed_ids(vocab_size, processor, rollout.suppress_special_tokens)

    # ---- the RolloutEngine interface ----------------------------------------------------
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingSpec,
        adapter: AdapterRef | None,
    ) -> list[list[Completion]]:
        self.wake()
        model = self.serve_adapter(adapter) if adapter is not None else self.model_path
        if not self._prompt_checked and requests:
            self._check_prompt(requests[0], model)
        bodies = [self._body(r, sampling, model) for r in requests]
        # One HTTP request per image, all in flight at once: the server batches them.
        with ThreadPoolExecutor(max_workers=max(1, len(bodies))) as pool:
            responses = list(pool.map(lambda body: self._post("/v1/chat/completions", body,
                                                              "generate"), bodies))
        copies = sampling.n if sampling.greedy else 1
        return [[self._completion(choice) for choice in _choices(response)] * copies
                for response in responses]

    def sleep(self) -> None:
        """Level 1 (weights to host memory) when this process started the server on a GPU."""
        if self.sleep_enabled and not self.asleep:
            self._post("/sleep", None, "sleep", params={"level": "1"})
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self._post("/wake_up", None, "wake up")
            self.asleep = False
            # As in-process: LoRA slots are not documented to survive sleep; reload on use.
            for name in list(self._loaded):
                self._unload(name)

    def close(self) -> None:
        if self.process is None:  # someone else's server: leave it as found
            for name in list(self._loaded):
                with contextlib.suppress(ServerError):
                    self._unload(name)
        self._http.close()
        if self.process is not None:
            self.process.stop()

    # ---- adapters -----------------------------------------------------------------------
    def served_adapter(self, name: str) -> str | None:
        """The server's name for the loaded version of adapter `name`, or None."""
        return self._loaded.get(name)

    def serve_adapter(self, adapter: AdapterRef) -> str:
        """The adapter's served name, loaded first unless this version already is (lmms-eval's
        OpenAI model class evaluates it by that name)."""
        wanted = served_name(adapter, self._tag)
        if self._loaded.get(adapter.name) != wanted:
            check_adapter_dir(adapter, self.rollout.max_lora_rank)
            if adapter.name in self._loaded:
                self._unload(adapter.name)
            body = {"lora_name": wanted, "lora_path": str(Path(adapter.path).resolve())}
            self._post("/v1/load_lora_adapter", body, f"loading adapter {wanted}",
                       refused="refused to load adapter")
            self._loaded[adapter.name] = wanted
        return wanted

    def _unload(self, name: str) -> None:
        served = self._loaded.pop(name)
        self._post("/v1/unload_lora_adapter", {"lora_name": served},
                   f"unloading adapter {served}", refused="refused to unload adapter")

    # ---- checks -------------------------------------------------------------------------
    def _check_model(self) -> int:
        """The server must serve this backbone; returns its vocabulary size."""
        listed = self._get("/v1/models", "the model check")["data"]
        served = {entry["id"] for entry in listed} | {entry.get("root") for entry in listed}
        if self.model_path not in served:
            names = ", ".join(sorted(str(e["id"]) for e in listed))
            raise ServerError(
                f"the vLLM server at {self.url} serves {names}, not {self.model_path} (the run's "
                "model.name_or_path): start it with --model or --served-model-name set to it")
        # vLLM's vocabulary is the text model's embedding size (the in-process engine asks
        # vLLM's model_config.get_vocab_size(), which reads the same field).
        return AutoConfig.from_pretrained(self.model_path).get_text_config().vocab_size

    def _check_prompt(self, request: GenerationRequest, model: str) -> None:
        """The server's chat template must give `render`'s string (the update scores that)."""
        body = self._body(request, SamplingSpec(1, 0.0, 1.0, 1), model)
        body["return_prompt_text"] = True
        served = self._post("/v1/chat/completions", body, "the prompt check").get("prompt_text")
        expected = render(self.processor, request.text)
        if served is not None and served != expected:
            raise ServerError(
                f"the vLLM server at {self.url} renders the prompt differently from "
                f"ireasoner.prompts.render (got {served!r}, expected {expected!r}): the update "
                "would score tokens the rollouts never conditioned on")
        if served is None:
            log.warning("the vLLM server at %s does not return prompt_text: prompt not checked",
                        self.url)
        self._prompt_checked = True

    # ---- requests -----------------------------------------------------------------------
    def _body(self, request: GenerationRequest, sampling: SamplingSpec, model: str
              ) -> dict[str, Any]:
        content = [{"type": "image_url", "image_url": {"url": data_url(request.image)}},
                   {"type": "text", "text": request.text}]
        return {
            "model": model,
            "messages": [{"role": "user", "content": content}],
            # vLLM seeds the i-th of the n samples with seed + i, as in-process; greedy is
            # sampled once and copied (vLLM refuses n > 1 at temperature 0).
            "n": 1 if sampling.greedy else sampling.n,
            "seed": request.seed,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "stop_token_ids": self.stop_ids,
            "allowed_token_ids": self.allowed_ids,
            "skip_special_tokens": False,
            "logprobs": True,
            "top_logprobs": 0,
            "return_tokens_as_token_ids": True,
            "return_token_ids": True,
        }

    def _completion(self, choice: dict[str, Any]) -> Completion:
        token_ids = list(choice["token_ids"])
        logprobs = [step["logprob"] for step in choice["logprobs"]["content"]]
        if len(logprobs) != len(token_ids):
            raise ServerError(f"the vLLM server at {self.url} returned {len(token_ids)} token "
                              f"ids but {len(logprobs)} log-probs")
        stopped = choice["finish_reason"] == "stop"
        if stopped and token_ids and token_ids[-1] in self.stop_ids:
            token_ids, logprobs = token_ids[:-1], logprobs[:-1]
        return build_completion(token_ids, logprobs, stopped, self.processor.tokenizer,
                                self.rollout.max_repeats)

    def _get(self, path: str, doing: str) -> dict[str, Any]:
        return self._call("GET", path, None, doing, "failed", None)

    def _post(self, path: str, body: dict[str, Any] | None, doing: str,
              refused: str = "failed", params: dict[str, str] | None = None) -> dict[str, Any]:
        return self._call("POST", path, body, doing, refused, params)

    def _call(self, method: str, path: str, body: dict[str, Any] | None, doing: str,
              refused: str, params: dict[str, str] | None) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=body, params=params)
        except httpx.TimeoutException:
            raise ServerError(
                f"the vLLM server at {self.url} did not answer {method} {path} within "
                f"{self.rollout.server.request_timeout_s:.0f} s during {doing} "
                "(rollout.server.request_timeout_s)") from None
        except httpx.TransportError as err:
            if self.process is not None and not self.process.alive():
                raise ServerError(self.process.died_message(doing)) from None
            raise ServerError(f"the vLLM server at {self.url} is unreachable during {doing}: "
                              f"{err}") from None
        if response.status_code >= 400:
            raise ServerError(f"the vLLM server at {self.url} {refused} during {doing}: "
                              f"HTTP {response.status_code} {response.text[:500]}")
        if "json" not in response.headers.get("content-type", ""):
            return {}  # the adapter routes answer in plain text
        return response.json()


def data_url(image: Image.Image) -> str:
    """PNG, lossless: the server decodes the very pixels the log-prob code sees."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _choices(response: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(response["choices"], key=lambda choice: choice["index"])
