"""Merge the Solver adapter into the backbone and save a plain checkpoint that transformers,
vLLM and lmms-eval load like any other (lmms-eval's model classes take no adapter)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor

from ireasoner.devices import DTYPES

ADAPTER_CONFIG_FILE = "adapter_config.json"

log = logging.getLogger(__name__)


def export_merged(base: str, adapter_dir: Path, out_dir: Path, dtype: str | None = None) -> Path:
    """Load `base` (hub id or local directory; resolve "tiny" with
    `ireasoner.model.loading.resolve_path` first) plus the PEFT adapter saved in `adapter_dir`,
    merge, and save weights and processor files to `out_dir`. `dtype` ("float32", "bfloat16",
    "float16") defaults to the base checkpoint's own."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / ADAPTER_CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{adapter_dir} holds no {ADAPTER_CONFIG_FILE}: not a PEFT adapter")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    torch_dtype = DTYPES[dtype] if dtype is not None else "auto"
    started = time.monotonic()
    log.info("export 1/3: loading %s", base)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch_dtype)
    log.info("export 2/3: merging the adapter %s (%.1f s)", adapter_dir, time.monotonic() - started)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    out_dir = Path(out_dir)
    log.info("export 3/3: writing %s (%.1f s)", out_dir, time.monotonic() - started)
    merged.save_pretrained(out_dir)
    AutoProcessor.from_pretrained(base).save_pretrained(out_dir)
    log.info("export done (%.1f s)", time.monotonic() - started)
    return out_dir
