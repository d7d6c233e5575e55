"""Per-token log-probabilities of responses under the policy, micro-batched.

The reference policy is the same model with its adapters disabled, as a context manager:
    with model.disable_adapter(), torch.no_grad():
        reference = response_logprobs(model, ...)
(PEFT's `disable_adapter()` called outside `with` does nothing.)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn
from transformers import ProcessorMixin

from ireasoner.devices import resolve_dtype
from ireasoner.policy.batch import MicroBatch, Response, iter_micro_batches


@dataclass
class TokenLogprobs:
    """Row i is response i; columns are its tokens, left-aligned, padded where `mask` is False."""

    logprobs: torch.Tensor  # (B, T) log π(y_t | image, prompt, y_<t); 0 at padding
    mask: torch.Tensor  # (B, T) bool
    full: torch.Tensor | None = None  # (B, T, V) next-token log-softmax, for the exact KL

    def sequence_logprobs(self) -> torch.Tensor:
        """(B,) log π(y | ·): the sum over each response's tokens."""
        return (self.logprobs * self.mask).sum(dim=1)


def forward_logprobs(
    model: nn.Module, batch: MicroBatch, full: bool = False, precision: str = "auto"
) -> TokenLogprobs:
    """One forward pass over a micro-batch; differentiable when gradients are enabled.
    `precision` "auto" autocasts to bf16 on CUDA and stays fp32 on CPU."""
    compute_dtype = resolve_dtype(precision, batch.device)
    autocast = (
        torch.autocast(batch.device.type, dtype=compute_dtype)
        if compute_dtype != torch.float32
        else nullcontext()
    )
    # Logits only where responses are predicted: the last `keep` positions cover every row's
    # response (right padding), which spares the (B, L, V) tensor over the image and prompt.
    width = batch.inputs["input_ids"].shape[1]
    keep = width - int(batch.prompt_lengths.min()) + 1
    with autocast:
        logits = model(**batch.inputs, logits_to_keep=keep, use_cache=False).logits
    log_softmax = logits.float().log_softmax(dim=-1)
    # Position p predicts token p + 1; row b's response token t sits at prompt_length_b + t.
    steps = torch.arange(batch.response_ids.shape[1], device=batch.device)
    positions = batch.prompt_lengths[:, None] - 1 + steps[None, :] - (width - keep)
    positions = positions.clamp(max=keep - 1)
    rows = torch.arange(len(batch.indices), device=batch.device)[:, None]
    per_position = log_softmax[rows, positions]  # (B, T, V)
    token_logprobs = per_position.gather(-1, batch.response_ids[..., None]).squeeze(-1)
    token_logprobs = token_logprobs.masked_fill(~batch.response_mask, 0.0)
    return TokenLogprobs(
        logprobs=token_logprobs,
        mask=batch.response_mask,
        full=per_position if full else None,
    )


def response_logprobs(
    model: nn.Module,
    processor: ProcessorMixin,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    responses: Sequence[Response],
    micro_batch_size: int,
    full: bool = False,
    precision: str = "auto",
) -> TokenLogprobs:
    """Log-probs of a whole batch, computed micro-batch by micro-batch to bound memory, in the
    caller's row order. Gradients flow only if the caller enables them (the update loop uses
    `iter_micro_batches` + `forward_logprobs` to accumulate instead)."""
    if not images:
        raise ValueError("response_logprobs needs at least one (image, prompt, response) row")
    device = next(model.parameters()).device
    parts = [
        forward_logprobs(model, batch, full=full, precision=precision)
        for batch in iter_micro_batches(
            processor, images, prompts, responses, micro_batch_size, device
        )
    ]
    return concat_token_logprobs(parts)


def concat_token_logprobs(parts: Sequence[TokenLogprobs]) -> TokenLogprobs:
    """Stack micro-batch results row-wise, padding the token axis to the longest response."""
    width = max(part.mask.shape[1] for part in parts)

    def pad(tensor: torch.Tensor, value: float | bool) -> torch.Tensor:
        missing = width - tensor.shape[1]
        if missing == 0:
            return tensor
        filler = tensor.new_full((tensor.shape[0], missing, *tensor.shape[2:]), value)
        return torch.cat([tensor, filler], dim=1)

    full = None
    if parts[0].full is not None:
        full = torch.cat([pad(part.full, 0.0) for part in parts])
    return TokenLogprobs(
        logprobs=torch.cat([pad(part.logprobs, 0.0) for part in parts]),
        mask=torch.cat([pad(part.mask, False) for part in parts]),
        full=full,
    )
