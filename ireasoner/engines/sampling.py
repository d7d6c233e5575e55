"""Per-sequence sampling inside one batched `generate` call.

`transformers.generate` samples every row with one `torch.multinomial` over one random stream,
so a row's tokens would change with the rows beside it. Here each sequence brings its own
uniforms, drawn beforehand from a generator seeded with its own seed, and `SeededSampler` (a
logits processor) draws the row's next token from them by inverse CDF: token i is chosen with
probability p_i, and which token a row gets depends only on its logits and its own stream.
`generate` then runs greedy over the one-hot scores the sampler returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from ireasoner.engines.base import SamplingSpec


def sequence_seed(request_seed: int, sample: int) -> int:
    """The seed of a request's `sample`-th sequence: distinct for every (seed, sample) pair, so
    request 7's second sample and request 8's first do not share a stream."""
    key = f"{request_seed}/sample/{sample}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)


def sequence_uniforms(seeds: Sequence[int], steps: int) -> torch.Tensor:
    """(len(seeds), steps) uniforms in [0, 1), row r from a CPU generator seeded with seeds[r]:
    the same draws on every device."""
    rows = [torch.rand(steps, generator=torch.Generator().manual_seed(seed)) for seed in seeds]
    return torch.stack(rows) if rows else torch.empty(0, steps)


def inverse_cdf_draw(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Row r's token is the first index whose cumulative probability exceeds uniforms[r] times
    the row's total: a zero-probability token is never drawn (its cumulative value equals its
    predecessor's), and rounding that lands on the total falls back to the last token with
    probability > 0."""
    cdf = probs.cumsum(dim=-1)
    targets = uniforms.to(cdf.dtype)[:, None] * cdf[:, -1:]
    drawn = torch.searchsorted(cdf, targets, right=True)[:, 0]
    vocab = probs.shape[-1]
    last_positive = vocab - 1 - (probs.flip(-1) > 0).to(torch.int8).argmax(dim=-1)
    return torch.minimum(drawn, last_positive)


def sampling_filters(sampling: SamplingSpec, suppressed_ids: Sequence[int],
                     device: torch.device) -> LogitsProcessorList:
    """What turns raw logits into the sampling distribution: suppression, then (when sampling)
    temperature and top-p, transformers' own processors in transformers' own order."""
    filters = LogitsProcessorList()
    if suppressed_ids:
        filters.append(SuppressTokensLogitsProcessor(list(suppressed_ids), device=device))
    if not sampling.greedy and sampling.temperature != 1.0:
        filters.append(TemperatureLogitsWarper(sampling.temperature))
    if not sampling.greedy and sampling.top_p < 1.0:
        filters.append(TopPLogitsWarper(sampling.top_p))
    return filters


class SeededSampler(LogitsProcessor):
    """Chooses each row's next token (argmax when `uniforms` is None, else an inverse-CDF draw
    with the row's uniform for this step), records its log-probability under the raw logits
    (temperature 1, no top-p, no suppression: `Completion.logprobs`), and returns scores that
    are -inf everywhere but the chosen token, for `generate`'s greedy selection.

    It must be the only logits processor, so that `scores` are the raw logits: the engine's
    GenerationConfig leaves every built-in processor off."""

    def __init__(self, filters: LogitsProcessorList, uniforms: torch.Tensor | None,
                 prompt_length: int) -> None:
        self.filters = filters
        self.uniforms = uniforms
        self.prompt_length = prompt_length
        self.step_logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        filtered = self.filters(input_ids, scores)
        if self.uniforms is None:
            tokens = filtered.argmax(dim=-1)
        else:
            step = input_ids.shape[1] - self.prompt_length
            tokens = inverse_cdf_draw(torch.softmax(filtered, dim=-1), self.uniforms[:, step])
        raw = torch.log_softmax(scores.float(), dim=-1)
        self.step_logprobs.append(raw.gather(-1, tokens[:, None])[:, 0])
        return torch.full_like(scores, float("-inf")).scatter_(-1, tokens[:, None], 0.0)

    def logprobs(self, steps: int) -> torch.Tensor:
        """(rows, steps) log-probabilities of the chosen tokens, on the CPU. `steps` is the
        number of generated columns `generate` returned (it may have run a step it undid)."""
        return torch.stack(self.step_logprobs[:steps], dim=1).cpu()
