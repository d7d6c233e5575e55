import json
from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    Qwen2_5_VLForConditionalGeneration,
)

from ireasoner.model.tiny import (
    END_OF_TURN,
    HEAD_DIM,
    MROPE_SECTION,
    SPECIAL_TOKENS,
    build_tokenizer,
    ensure_tiny_model,
    tiny_model_dir,
)
from ireasoner.model.warmup import REPORT_FILE
from ireasoner.prompts import render, suppressed_token_ids


def test_tokenizer_keeps_every_qwen_special_token_as_one_id_inside_the_vocab():
    tokenizer = build_tokenizer(seed=0)
    for token in SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] < len(tokenizer)
    assert 256 < len(tokenizer) <= 1024


def test_tokenizer_round_trips_format_text_byte_for_byte():
    tokenizer = build_tokenizer(seed=0)
    text = "<think>\nStep 1: Ünïcode 3.5 × 2 = 7.\n</think><answer>(B) 7</answer>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_checkpoint_reloads_through_the_auto_classes_with_the_real_architecture(tiny_model_path):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path)
    processor = AutoProcessor.from_pretrained(tiny_model_path)
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    text = model.config.text_config
    assert text.hidden_size // text.num_attention_heads == HEAD_DIM == 64
    assert sum(text.rope_parameters["mrope_section"]) == HEAD_DIM // 2 == sum(MROPE_SECTION)
    assert model.config.image_token_id == processor.image_token_id
    assert text.eos_token_id == processor.tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert max(text.bos_token_id, text.pad_token_id) < text.vocab_size
    assert (Path(tiny_model_path) / "generation_config.json").is_file()


def test_saved_weights_reload_identically(tiny_model_path, tmp_path):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path)
    model.save_pretrained(tmp_path)
    again = AutoModelForImageTextToText.from_pretrained(tmp_path)
    for (name, saved), reloaded in zip(model.state_dict().items(), again.state_dict().values(),
                                       strict=True):
        assert torch.equal(saved, reloaded), name


def test_generates_text_from_an_image_through_the_chat_template(tiny_backbone, tiny_images):
    processor, model = tiny_backbone.processor, tiny_backbone.model
    prompt = render(processor, "How many bars are there?")
    inputs = processor(images=[tiny_images[0]], text=[prompt], return_tensors="pt")
    torch.manual_seed(0)
    output = model.generate(**inputs, do_sample=True, max_new_tokens=12,
                            suppress_tokens=suppressed_token_ids(processor))
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    assert len(new_tokens) > 0
    assert processor.decode(new_tokens, skip_special_tokens=True).strip()


def test_cached_build_is_reused_not_rebuilt(tiny_model_path):
    assert tiny_model_dir(0, warmup=True) == tiny_model_path
    before = (tiny_model_path / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(seed=0) == tiny_model_path
    assert (tiny_model_path / "model.safetensors").stat().st_mtime_ns == before


def test_random_build_lands_in_its_own_cache_dir_and_leaves_no_staging(tmp_path):
    path = ensure_tiny_model(seed=3, cache_dir=tmp_path, warmup=False)
    assert path == tiny_model_dir(3, warmup=False, cache_dir=tmp_path)
    assert (path / "model.safetensors").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_warm_checkpoint_records_its_warmup_report(tiny_model_path):
    report = json.loads((tiny_model_path / REPORT_FILE).read_text())
    assert report["final_loss"] < report["first_loss"]
