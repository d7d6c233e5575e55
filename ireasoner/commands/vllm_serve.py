"""`ireasoner vllm-serve`: a vLLM server for a config's model and rollout settings, for runs
that set `rollout.server.url` to it (from another shell or machine)."""

from __future__ import annotations

from pathlib import Path

from ireasoner.config import Config
from ireasoner.devices import resolve_device, resolve_dtype
from ireasoner.engines.server_process import ServerProcess
from ireasoner.engines.vllm_server import launch_server
from ireasoner.model.loading import load_processor, resolve_path

_DTYPE_NAMES = {"torch.float32": "float32", "torch.bfloat16": "bfloat16",
                "torch.float16": "float16"}


def serve_config(cfg: Config, log_dir: Path) -> ServerProcess:
    """Start the server a run of `cfg` would start, and wait until it is healthy. The run
    then needs rollout.server.url set to its URL; model.name_or_path names the same model."""
    path = resolve_path(cfg.model)
    processor = load_processor(path, cfg.model.min_pixels, cfg.model.max_pixels)
    dtype = resolve_dtype(cfg.model.dtype, resolve_device(cfg.model.device))
    return launch_server(path, processor, cfg.rollout, _DTYPE_NAMES[str(dtype)],
                         cfg.trainer.seed, log_dir)
