"""Supervised fine-tuning on (image, prompt, response) examples: cross-entropy on the response
tokens only, AdamW over whatever requires grad (the whole tiny model for the format warm-up;
the Solver adapter alone for the IVR-R1 cold start)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import nn
from transformers import ProcessorMixin

from ireasoner.policy.batch import iter_micro_batches
from ireasoner.policy.logprobs import forward_logprobs


@dataclass(frozen=True)
class SFTExample:
    image: Image.Image
    prompt: str  # rendered (ireasoner.prompts.render)
    response: str  # the assistant's text; the end-of-turn token is appended when training


@dataclass
class SFTStats:
    losses: list[float] = field(default_factory=list)  # mean token cross-entropy per step
    tokens: int = 0  # response tokens seen

    @property
    def steps(self) -> int:
        return len(self.losses)


def sft_train(
    model: nn.Module,
    processor: ProcessorMixin,
    examples: list[SFTExample],
    steps: int | None = None,
    epochs: int | None = None,
    lr: float = 1e-4,
    batch_size: int = 8,
    micro_batch_size: int = 4,
    seed: int = 0,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    precision: str = "auto",
    stop: Callable[[int], bool] | None = None,
) -> SFTStats:
    """Train for `steps` optimizer steps or `epochs` passes (exactly one of them) over shuffled
    examples; each step averages the loss over the response tokens of `batch_size` examples,
    accumulated in micro-batches. `stop(steps_done)`, called after every step, ends training
    early when it returns True (early stopping on a validation set)."""
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    if not examples:
        raise ValueError("sft_train needs at least one example")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires grad: nothing to train")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if steps is None:
        steps = epochs * -(-len(examples) // batch_size)
    end_of_turn = processor.tokenizer.eos_token
    torch.manual_seed(seed)  # dropout masks, for a reproducible run
    stats = SFTStats()
    was_training = model.training
    model.train()
    for batch in _batches(examples, batch_size, steps, seed):
        optimizer.zero_grad(set_to_none=True)
        micro_batches = list(iter_micro_batches(
            processor,
            [e.image for e in batch],
            [e.prompt for e in batch],
            [e.response + end_of_turn for e in batch],
            micro_batch_size,
            next(model.parameters()).device,
        ))
        total_tokens = sum(int(mb.response_mask.sum()) for mb in micro_batches)
        step_loss = 0.0
        for micro_batch in micro_batches:
            out = forward_logprobs(model, micro_batch, precision=precision)
            loss = -(out.logprobs * out.mask).sum() / total_tokens
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        stats.losses.append(step_loss)
        stats.tokens += total_tokens
        if stop is not None and stop(stats.steps):
            break
    model.train(was_training)
    return stats


def _batches(examples: list[SFTExample], batch_size: int, steps: int, seed: int):
    """`steps` batches drawn from successive shuffles of the examples."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            reshuffled = list(range(len(examples)))
            rng.shuffle(reshuffled)
            order.extend(reshuffled)
        yield [examples[i] for i in order[:batch_size]]
        del order[:batch_size]
