"""Model inputs for (image, rendered prompt, response) triples, right-padded.

A prompt is encoded by the processor once per distinct (image, prompt) pair, so the N rollouts
of one image share its encoding; responses are appended as token ids and only they are scored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import ProcessorMixin

Response = str | Sequence[int]


@dataclass
class EncodedPrompt:
    input_ids: torch.Tensor  # (P,) with the image placeholder expanded to its patch tokens
    mm_token_type_ids: torch.Tensor | None  # (P,) when the processor returns it
    pixel_values: torch.Tensor  # (patches, dim)
    image_grid_thw: torch.Tensor  # (1, 3)


@dataclass
class MicroBatch:
    """One forward pass worth of rows. `indices` are the rows' positions in the caller's batch."""

    indices: list[int]
    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask, pixel_values, image_grid_thw, ...
    prompt_lengths: torch.Tensor  # (B,) long
    response_ids: torch.Tensor  # (B, T) long, padded with the pad id
    response_mask: torch.Tensor  # (B, T) bool

    @property
    def device(self) -> torch.device:
        return self.response_ids.device


def encode_prompt(processor: ProcessorMixin, image: Image.Image, prompt: str) -> EncodedPrompt:
    encoded = processor(images=[image], text=[prompt], return_tensors="pt")
    type_ids = encoded.get("mm_token_type_ids")
    return EncodedPrompt(
        input_ids=encoded["input_ids"][0],
        mm_token_type_ids=type_ids[0] if type_ids is not None else None,
        pixel_values=encoded["pixel_values"],
        image_grid_thw=encoded["image_grid_thw"],
    )


def response_ids(token_ids: Sequence[int], finish_reason: str, eos_token_id: int) -> list[int]:
    """A stored sample's tokens to train on: the sampled tokens plus the stop token when the
    sample stopped on one, so that the decision to stop is reinforced too (engines report
    tokens without the stop token)."""
    return [*token_ids, eos_token_id] if finish_reason == "stop" else list(token_ids)


def response_token_ids(processor: ProcessorMixin, response: Response) -> list[int]:
    """Token ids given as such are kept verbatim (re-encoding sampled text may not reproduce
    them); text is tokenized without added special tokens."""
    if isinstance(response, str):
        return processor.tokenizer(response, add_special_tokens=False)["input_ids"]
    return [int(token) for token in response]


def check_lengths(images: Sequence, prompts: Sequence, responses: Sequence) -> None:
    if not len(images) == len(prompts) == len(responses):
        raise ValueError(
            f"images, prompts and responses must align: got {len(images)}, {len(prompts)} "
            f"and {len(responses)}"
        )


def collate(
    prompts: Sequence[EncodedPrompt], responses: Sequence[list[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-padded model inputs. mm_token_type_ids must cover the whole sequence (zeros over
    the response and padding), or the model's rope-index computation fails on a shape mismatch."""
    lengths = [len(p.input_ids) + len(r) for p, r in zip(prompts, responses, strict=True)]
    width = max(lengths)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    type_ids = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        tokens = torch.cat([prompt.input_ids, torch.tensor(response, dtype=torch.long)])
        input_ids[row, : len(tokens)] = tokens
        attention_mask[row, : len(tokens)] = 1
        if prompt.mm_token_type_ids is not None:
            type_ids[row, : len(prompt.input_ids)] = prompt.mm_token_type_ids
    inputs = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values": torch.cat([p.pixel_values for p in prompts]),
        "image_grid_thw": torch.cat([p.image_grid_thw for p in prompts]),
    }
    if prompts[0].mm_token_type_ids is not None:
        inputs["mm_token_type_ids"] = type_ids
    return inputs


def pad_responses(responses: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(r) for r in responses), default=0)
    ids = torch.full((len(responses), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(responses), width), dtype=torch.bool)
    for row, response in enumerate(responses):
        ids[row, : len(response)] = torch.tensor(response, dtype=torch.long)
        mask[row, : len(response)] = True
    return ids, mask


def iter_micro_batches(
    processor: ProcessorMixin,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    responses: Sequence[Response],
    micro_batch_size: int,
    device: torch.device | str = "cpu",
) -> Iterator[MicroBatch]:
    """Micro-batches in the caller's order, for log-probs or gradient accumulation."""
    check_lengths(images, prompts, responses)
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
    pad_id = processor.tokenizer.pad_token_id
    encoded: dict[tuple[int, str], EncodedPrompt] = {}
    for start in range(0, len(images), micro_batch_size):
        indices = list(range(start, min(start + micro_batch_size, len(images))))
        rows = []
        for i in indices:
            key = (id(images[i]), prompts[i])
            if key not in encoded:
                encoded[key] = encode_prompt(processor, images[i], prompts[i])
            rows.append(encoded[key])
        tokens = [response_token_ids(processor, responses[i]) for i in indices]
        inputs = collate(rows, tokens, pad_id)
        response_ids, response_mask = pad_responses(tokens, pad_id)
        yield MicroBatch(
            indices=indices,
            inputs={name: tensor.to(device) for name, tensor in inputs.items()},
            prompt_lengths=torch.tensor([len(r.input_ids) for r in rows], device=device),
            response_ids=response_ids.to(device),
            response_mask=response_mask.to(device),
        )
