"""GRPO with policy shaping for off-policy (rectified) rollouts: IVR-R1's update (spec §6).

    J(θ) = (1/T) Σ_tokens [ on-policy:  min(ρ_t·A, clip(ρ_t, 1 − ε, 1 + ε)·A)
                            rectified:  f(π_θ(y_t))·A,   f(π) = π / (π + γ_s) ]
           − β·mean_{on-policy rollouts} KL(π_θ ‖ π_ref)

T counts every response token of the batch (token-level normalisation), A is the rollout's
group-normalised advantage, ρ_t = π_θ(y_t) / π_old(y_t), π_ref the backbone with the adapters
disabled. The KL term covers on-policy rollouts only: its estimators assume tokens drawn from π_θ.

π_old: every iteration samples fresh rollouts and takes exactly one optimizer step on them, so
π_old is π_θ as it stands before that step. It is taken as the detached log-probs of the same
forward pass, not the engine's sampling log-probs, which differ from the trainer's numerics
(vLLM in bf16): the ratio is 1 in value, its gradient ∇log π, and the clip matters only if the
trainer is ever given several steps per batch.

`GRPOTrainer` is a `RoleTrainer` (optimizer, β, step counter, micro-batching, reference pass), so
`policy.state` saves and restores it unchanged; its EMA baseline is unused (GRPO's baseline is
the group mean) and stays empty in the saved state.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import PeftModel
from PIL import Image
from transformers import ProcessorMixin

from ireasoner.config import IVRConfig, KLConfig, OptimizationConfig
from ireasoner.policy.batch import Response
from ireasoner.policy.logprobs import forward_logprobs
from ireasoner.policy.update import RoleTrainer, training_role


def group_advantages(rewards: torch.Tensor, epsilon: float) -> torch.Tensor:
    """A_i = (r_i − mean r) / (std r + ε) over one group (population std)."""
    if rewards.ndim != 1 or rewards.numel() == 0:
        raise ValueError(f"rewards must be a non-empty 1-d tensor, got shape {tuple(rewards.shape)}")
    return (rewards - rewards.mean()) / (rewards.std(unbiased=False) + epsilon)


def shaped_probability(token_logprobs: torch.Tensor, gamma: float) -> torch.Tensor:
    """f(π) = π / (π + γ): d f / d π = γ / (π + γ)², largest for rare (corrective) tokens."""
    if gamma <= 0:
        raise ValueError(f"shaping gamma must be > 0, got {gamma}")
    probability = token_logprobs.exp()
    return probability / (probability + gamma)


def clipped_surrogate(token_logprobs: torch.Tensor, old_logprobs: torch.Tensor,
                      advantages: torch.Tensor, clip_epsilon: float) -> torch.Tensor:
    """min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A) per token; `advantages` broadcast over tokens."""
    ratio = (token_logprobs - old_logprobs).exp()
    clipped = ratio.clamp(1 - clip_epsilon, 1 + clip_epsilon)
    return torch.minimum(ratio * advantages, clipped * advantages)


@dataclass(frozen=True)
class GRPOExample:
    image: Image.Image
    prompt: str  # rendered: the Solver prompt the on-policy rollouts were sampled from
    response: Response  # token ids (with the stop token when it stopped on one) or text
    advantage: float
    off_policy: bool  # a rectified rollout: shaped objective, no ratio, no KL


@dataclass(frozen=True)
class GRPOStats:
    role: str
    step: int
    loss: float
    pg_loss: float  # −(1/T)·Σ surrogate
    kl: float  # mean per-token KL of the on-policy rollouts, before the step
    beta: float
    next_beta: float
    grad_norm: float  # before clipping
    num_examples: int
    num_off_policy: int
    num_skipped: int  # empty responses
    num_tokens: int
    off_policy_tokens: int
    seconds: float
    # Per example given (None for a skipped one): its token-mean KL before the step (None for
    # a rectified one, which the KL term leaves out) and its response tokens.
    example_kl: tuple[float | None, ...] = ()
    example_tokens: tuple[int | None, ...] = ()

    @property
    def shaped_token_share(self) -> float:
        return self.off_policy_tokens / self.num_tokens if self.num_tokens else 0.0


@dataclass
class _Totals:
    pg_loss: float = 0.0
    kl: float = 0.0
    tokens: int = 0
    off_policy_tokens: int = 0
    example_kl: dict[int, float | None] = field(default_factory=dict)  # by kept index
    example_tokens: dict[int, int] = field(default_factory=dict)


class GRPOTrainer(RoleTrainer):
    def __init__(self, model: PeftModel, processor: ProcessorMixin, role: str,
                 optimization: OptimizationConfig, kl: KLConfig, ivr: IVRConfig) -> None:
        super().__init__(model, processor, role, optimization, kl)
        self.clip_epsilon = ivr.clip_epsilon
        self.shaping_gamma = ivr.shaping_gamma

    def update(self, examples: Sequence[GRPOExample]) -> GRPOStats:  # type: ignore[override]
        """One optimizer step on the adapter from on-policy and rectified rollouts."""
        started = time.perf_counter()
        kept = [example for example in examples if len(example.response) > 0]
        if not any(not example.off_policy for example in kept):
            raise ValueError("a GRPO update needs at least one non-empty on-policy rollout")
        advantages = torch.tensor([float(example.advantage) for example in kept])
        if not bool(torch.isfinite(advantages).all()):
            raise ValueError("advantages must be finite")
        beta = self.beta.value
        totals = self._accumulate(kept, advantages, beta)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters,
                                                         self.optimization.grad_clip))
        if not math.isfinite(grad_norm):
            raise FloatingPointError(f"{self.role} GRPO update: gradient norm is {grad_norm}; "
                                     "the step was not taken")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return GRPOStats(
            role=self.role, step=self.step, loss=totals.pg_loss + beta * totals.kl,
            pg_loss=totals.pg_loss, kl=totals.kl, beta=beta, next_beta=self.beta.update(totals.kl),
            grad_norm=grad_norm, num_examples=len(kept),
            num_off_policy=sum(example.off_policy for example in kept),
            num_skipped=len(examples) - len(kept), num_tokens=totals.tokens,
            off_policy_tokens=totals.off_policy_tokens, seconds=time.perf_counter() - started,
            example_kl=_per_example(examples, totals.example_kl),
            example_tokens=_per_example(examples, totals.example_tokens),
        )

    def _accumulate(self, examples: Sequence[GRPOExample], advantages: torch.Tensor,
                    beta: float) -> _Totals:
        self.optimizer.zero_grad(set_to_none=True)
        off_policy = torch.tensor([example.off_policy for example in examples])
        total_tokens = sum(len(example.response) for example in examples)
        on_policy_count = int((~off_policy).sum())
        totals = _Totals()
        with training_role(self.model, self.role):
            for batch in self._micro_batches(examples):
                reference = self._reference(batch)
                policy = forward_logprobs(self.model, batch, full=self._exact,
                                          precision=self.optimization.precision)
                rows_off = off_policy[batch.indices].to(batch.device)
                batch_advantages = advantages[batch.indices].to(batch.device)[:, None]
                surrogate = torch.where(
                    rows_off[:, None],
                    shaped_probability(policy.logprobs, self.shaping_gamma) * batch_advantages,
                    clipped_surrogate(policy.logprobs, policy.logprobs.detach(),
                                      batch_advantages, self.clip_epsilon),
                )
                pg_loss = -(surrogate * policy.mask).sum() / total_tokens
                rollout_kl = self._rollout_kl(policy, reference)
                kl_term = (rollout_kl * ~rows_off).sum() / on_policy_count
                (pg_loss + beta * kl_term).backward()
                for row, index in enumerate(batch.indices):
                    totals.example_kl[index] = (None if examples[index].off_policy
                                                else float(rollout_kl[row].detach()))
                    totals.example_tokens[index] = int(policy.mask[row].sum())
                totals.pg_loss += float(pg_loss.detach())
                totals.kl += float(kl_term.detach())
                totals.tokens += int(policy.mask.sum())
                totals.off_policy_tokens += int((policy.mask & rows_off[:, None]).sum())
        return totals


def _per_example(examples: Sequence[GRPOExample], by_kept: dict[int, Any]) -> tuple:
    """Values indexed by position among the non-empty examples, spread over all of them."""
    kept = itertools.count()
    return tuple(by_kept[next(kept)] if len(example.response) > 0 else None
                 for example in examples)
