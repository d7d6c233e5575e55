"""KL-regularised REINFORCE on one role's LoRA adapter (spec §4, paper Eq. 7).

    L(θ) = −(1/N) Σ_i (r_i − b)·log π(y_i | x_i, q_i) + β·(1/N) Σ_i KL_i

log π(y | ·) is the sum of the response's token log-probs, KL_i the mean per-token KL of rollout
i against the frozen backbone (the adapters disabled), b the role's EMA baseline and β its
adaptive coefficient. Every micro-batch's loss is divided by the whole batch's N, so the
accumulated gradient is the one-batch gradient whatever the micro-batch size.

The flow calls the Solver's trainer every iteration and the Proposer's every K_p iterations,
with the examples gathered since its last update; both are `RoleTrainer`s on one model.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from peft import PeftModel
from PIL import Image
from transformers import ProcessorMixin

from ireasoner.config import KLConfig, OptimizationConfig
from ireasoner.policy.adapters import adapter_parameters, use_adapter
from ireasoner.policy.batch import MicroBatch, Response, iter_micro_batches
from ireasoner.policy.kl import AdaptiveBeta, exact_token_kl, k3_token_kl, mean_over_response
from ireasoner.policy.logprobs import TokenLogprobs, forward_logprobs


@dataclass(frozen=True)
class PolicyExample:
    """One scored sample of a role: for the Solver a rollout, for the Proposer a question."""

    image: Image.Image
    prompt: str  # rendered (ireasoner.prompts.render), exactly what the engine generated from
    # The sampled token ids (kept verbatim) or text; include the end-of-turn token when the
    # sample stopped on it, or the decision to stop is never reinforced.
    response: Response
    reward: float


@dataclass(frozen=True)
class UpdateStats:
    role: str
    step: int  # this role's optimizer steps so far, this one included
    loss: float
    pg_loss: float  # −mean((r − b)·log π(y|·))
    kl: float  # mean over rollouts of the per-token KL, before the step
    beta: float  # β used in this loss
    next_beta: float  # β after Eq. 8 with this batch's KL
    baseline: float  # b used for the advantages
    next_baseline: float  # b after this batch's EMA update
    advantage_mean: float
    advantage_std: float
    grad_norm: float  # before clipping
    num_examples: int
    num_skipped: int  # examples with an empty response: no token to score
    num_tokens: int  # response tokens scored
    seconds: float
    # Per example given (None for a skipped one): what the update made of it.
    examples: tuple[ExampleUpdate | None, ...] = ()


@dataclass(frozen=True)
class ExampleUpdate:
    """One example's part in an update: the optimizer step that used it, b and the advantage
    r − b it was weighted by, its KL before the step and the β that weighted that."""

    step: int
    reward: float
    baseline: float
    advantage: float
    kl: float
    beta: float
    tokens: int


@dataclass
class EmaBaseline:
    """b ← m·b + (1 − m)·mean(r), one per role.

    A batch's advantages use b as it was *before* that batch (so b does not depend on the
    rewards it is subtracted from); the first batch, with no history, uses its own mean reward,
    which also starts the EMA there instead of at 0 (an all-positive first advantage).
    """

    momentum: float
    value: float | None = None

    def current(self, rewards: torch.Tensor) -> float:
        return float(rewards.mean()) if self.value is None else self.value

    def update(self, rewards: torch.Tensor) -> float:
        previous = self.current(rewards)
        self.value = self.momentum * previous + (1 - self.momentum) * float(rewards.mean())
        return self.value

    def state_dict(self) -> dict[str, float | None]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        if set(state) != {"value"}:
            raise ValueError(f"baseline state must hold exactly 'value', got {sorted(state)}")
        self.value = None if state["value"] is None else float(state["value"])


class RoleTrainer:
    """The optimizer, EMA baseline and β of one role's adapter on the shared model."""

    def __init__(
        self,
        model: PeftModel,
        processor: ProcessorMixin,
        role: str,
        optimization: OptimizationConfig,
        kl: KLConfig,
    ) -> None:
        self.model = model
        self.processor = processor
        self.role = role
        self.optimization = optimization
        self.kl_estimator = kl.estimator
        self.parameters = list(adapter_parameters(model, role))
        if not self.parameters:
            raise ValueError(f"adapter {role!r} has no parameters to train")
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=optimization.lr, weight_decay=optimization.weight_decay
        )
        self.baseline = EmaBaseline(optimization.baseline_momentum)
        self.beta = AdaptiveBeta.from_config(kl)
        self.step = 0

    def update(self, examples: Sequence[PolicyExample]) -> UpdateStats:
        """One optimizer step on this role's adapter from a batch of scored samples."""
        started = time.perf_counter()
        kept = [example for example in examples if len(example.response) > 0]
        rewards = rewards_tensor(kept)
        baseline = self.baseline.current(rewards)
        advantages = rewards - baseline
        beta = self.beta.value
        totals = self.accumulate_gradients(kept, advantages, beta)
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(self.parameters, self.optimization.grad_clip)
        )
        if not math.isfinite(grad_norm):
            raise FloatingPointError(
                f"{self.role} update: gradient norm is {grad_norm}; the step was not taken"
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        next_beta = self.beta.update(totals.kl)
        next_baseline = self.baseline.update(rewards)
        # Recorded in float64, as the rewards table holds them (the loss used float32).
        updates = iter([ExampleUpdate(step=self.step, reward=float(example.reward),
                                      baseline=baseline,
                                      advantage=float(example.reward) - baseline,
                                      kl=totals.example_kl[k], beta=beta,
                                      tokens=totals.example_tokens[k])
                        for k, example in enumerate(kept)])
        return UpdateStats(
            role=self.role,
            step=self.step,
            loss=totals.pg_loss + beta * totals.kl,
            pg_loss=totals.pg_loss,
            kl=totals.kl,
            beta=beta,
            next_beta=next_beta,
            baseline=baseline,
            next_baseline=next_baseline,
            advantage_mean=float(advantages.mean()),
            advantage_std=float(advantages.std(unbiased=False)),
            grad_norm=grad_norm,
            num_examples=len(kept),
            num_skipped=len(examples) - len(kept),
            num_tokens=totals.tokens,
            seconds=time.perf_counter() - started,
            examples=tuple(next(updates) if len(example.response) > 0 else None
                           for example in examples),
        )

    def accumulate_gradients(
        self, examples: Sequence[PolicyExample], advantages: torch.Tensor, beta: float
    ) -> LossTotals:
        """Backpropagate the batch loss micro-batch by micro-batch into the adapter's .grad."""
        self.optimizer.zero_grad(set_to_none=True)
        totals = LossTotals()
        count = len(examples)
        with training_role(self.model, self.role):
            for batch in self._micro_batches(examples):
                reference = self._reference(batch)
                policy = forward_logprobs(
                    self.model, batch, full=self._exact, precision=self.optimization.precision
                )
                kl = self._rollout_kl(policy, reference)
                batch_advantages = advantages[batch.indices].to(batch.device)
                pg_loss = -(batch_advantages * policy.sequence_logprobs()).sum() / count
                kl_term = kl.sum() / count
                (pg_loss + beta * kl_term).backward()
                totals.add(pg_loss, kl_term, batch, kl)
        return totals

    @property
    def _exact(self) -> bool:
        return self.kl_estimator == "exact"

    def _micro_batches(self, examples: Sequence[PolicyExample]) -> Iterator[MicroBatch]:
        return iter_micro_batches(
            self.processor,
            [example.image for example in examples],
            [example.prompt for example in examples],
            [example.response for example in examples],
            self.optimization.micro_batch_size,
            next(self.model.parameters()).device,
        )

    def _reference(self, batch: MicroBatch) -> TokenLogprobs:
        # Eval mode: the reference is a fixed distribution, never a dropout sample of one.
        with evaluating(self.model), self.model.disable_adapter(), torch.no_grad():
            return forward_logprobs(
                self.model, batch, full=self._exact, precision=self.optimization.precision
            )

    def _rollout_kl(self, policy: TokenLogprobs, reference: TokenLogprobs) -> torch.Tensor:
        if self._exact:
            per_token = exact_token_kl(policy.full, reference.full)
        else:
            per_token = k3_token_kl(policy.logprobs, reference.logprobs)
        return mean_over_response(per_token, policy.mask)


@dataclass
class LossTotals:
    """Batch-level sums of the micro-batches' (already 1/N-scaled) loss terms."""

    pg_loss: float = 0.0
    kl: float = 0.0
    tokens: int = 0
    example_kl: dict[int, float] = field(default_factory=dict)  # by example index
    example_tokens: dict[int, int] = field(default_factory=dict)

    def add(self, pg_loss: torch.Tensor, kl: torch.Tensor, batch: MicroBatch,
            rollout_kl: torch.Tensor) -> None:
        self.pg_loss += float(pg_loss.detach())
        self.kl += float(kl.detach())
        self.tokens += int(batch.response_mask.sum())
        tokens = batch.response_mask.sum(dim=1).tolist()
        for row, index in enumerate(batch.indices):
            self.example_kl[index] = float(rollout_kl[row].detach())
            self.example_tokens[index] = int(tokens[row])


def rewards_tensor(examples: Sequence[PolicyExample]) -> torch.Tensor:
    if not examples:
        raise ValueError("an update needs at least one example with a non-empty response")
    rewards = torch.tensor([float(example.reward) for example in examples])
    bad = (~torch.isfinite(rewards)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"rewards must be finite; examples {bad} are not")
    return rewards


@contextlib.contextmanager
def training_role(model: PeftModel, role: str) -> Iterator[None]:
    """Train mode (LoRA dropout on) with `role` active; restores both afterwards."""
    previous = model.active_adapter
    with training(model):
        use_adapter(model, role)
        try:
            yield
        finally:
            use_adapter(model, previous)


@contextlib.contextmanager
def training(model: torch.nn.Module, mode: bool = True) -> Iterator[None]:
    was_training = model.training
    model.train(mode)
    try:
        yield
    finally:
        model.train(was_training)


def evaluating(model: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
    return training(model, mode=False)
