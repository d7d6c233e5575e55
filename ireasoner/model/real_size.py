"""A Qwen2.5-VL-7B-shaped config (no download): for benchmarks with random weights.

The tiny tokenizer and processor stand in for Qwen's (same special tokens, same image processor:
14 px patches, 2 x 2 merge), so inputs have a 7B run's shapes.
"""

from __future__ import annotations

from pathlib import Path

from transformers import Qwen2_5_VLConfig

from ireasoner.model.tiny import build_config, build_processor, build_tokenizer

QWEN25_VL_7B_TEXT = {
    "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
    "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                        "mrope_section": [16, 24, 24]},
    # The tiny config lists its 2 layers' types; the 7B's 28 are all full attention.
    "layer_types": ["full_attention"] * 28, "max_window_layers": 28,
}
QWEN25_VL_7B_VISION = {
    "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
    "out_hidden_size": 3584, "fullatt_block_indexes": [7, 15, 23, 31],
}


def real_size_config() -> Qwen2_5_VLConfig:
    config = build_config(build_tokenizer(seed=0))
    config.text_config.update(QWEN25_VL_7B_TEXT)
    config.vision_config.update(QWEN25_VL_7B_VISION)
    return config


def real_size_checkpoint(out_dir: Path) -> Path:
    """The config and the processor saved to `out_dir` (no weights: load with dummy weights)."""
    real_size_config().save_pretrained(out_dir)
    build_processor(build_tokenizer(seed=0)).save_pretrained(out_dir)
    return out_dir
