"""KL-regularised REINFORCE on one role's LoRA adapter (spec §4, paper Eq. 7).

    loss_i = (r_i − b)·NLL_i + β·KL_i

NLL_i is −log π(y_i | x_i, q_i) reduced over the response's tokens by their mean (the published
loss, `optimization.token_reduction: mean`) or their sum (Eq. 7 literally), KL_i the mean
per-token KL of rollout i against the frozen backbone (the adapters disabled), b the role's EMA
baseline and β its adaptive coefficient.

`optimization.update: per_rollout` (the published update) takes one optimizer step per example,
in the order given (the update stage gives image by image, rollout by rollout): zero grads →
backward → clip → AdamW, then β ← Eq. 8 with that KL_i and b ← m·b + (1 − m)·r_i, b from 0.
`batched` takes one step on the mean of the examples' losses, then updates β and b once (b
from the batch's mean reward). Inside a step every micro-batch's loss is divided by the step's
example count, so the accumulated gradient is the one-batch gradient whatever the micro-batch
size.

The flow calls the Solver's trainer every iteration and the Proposer's every K_p iterations;
both are `RoleTrainer`s on one model.
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
    """One role's update. Per rollout (spec §4) it is several optimizer steps: losses, KL and
    gradient norms are means over the steps, β and b those of the first step, next_β and
    next_b those after the last."""

    role: str
    step: int  # this role's optimizer steps so far, the last of this update included
    loss: float
    pg_loss: float  # mean((r − b)·NLL), NLL the reduced (token-mean or -sum) −log π(y|·)
    kl: float  # mean over rollouts of the per-token KL, before the step that used them
    beta: float  # β used in the first step's loss
    next_beta: float  # β after Eq. 8 (after the last step)
    baseline: float  # b used for the first advantage
    next_baseline: float  # b after the last EMA update
    advantage_mean: float
    advantage_std: float
    grad_norm: float  # before clipping (mean over the update's steps)
    num_examples: int
    num_skipped: int  # examples with an empty response: no token to score
    num_tokens: int  # response tokens scored
    seconds: float
    # Per example given (None for a skipped one): what the update made of it.
    examples: tuple[ExampleUpdate | None, ...] = ()
    num_steps: int = 1  # optimizer steps this update took


@dataclass(frozen=True)
class ExampleUpdate:
    """One example's part in an update: the optimizer step that used it, b and the advantage
    r − b it was weighted by, its NLL and KL before the step, the β that weighted the KL, and
    that step's gradient norm before clipping."""

    step: int
    reward: float
    baseline: float
    advantage: float
    nll: float
    kl: float
    beta: float
    tokens: int
    grad_norm: float


@dataclass
class EmaBaseline:
    """b ← m·b + (1 − m)·r, one per role.

    An advantage uses b as it was *before* the reward it is subtracted from entered it. The
    published update (per rollout) starts b at 0 and feeds it every rollout's reward; the
    batched update feeds it each batch's mean reward and, with no history, starts it at the
    first batch's own mean (`value=None`).
    """

    momentum: float
    value: float | None = None

    def current(self, default_mean: float) -> float:
        return default_mean if self.value is None else self.value

    def update(self, reward: float) -> float:
        previous = self.current(reward)
        self.value = self.momentum * previous + (1 - self.momentum) * reward
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
        per_rollout = optimization.update == "per_rollout"
        self.baseline = EmaBaseline(optimization.baseline_momentum,
                                    0.0 if per_rollout else None)
        self.beta = AdaptiveBeta.from_config(kl)
        self.step = 0

    def update(self, examples: Sequence[PolicyExample]) -> UpdateStats:
        """Train this role's adapter on scored samples, given in the order they are stepped on:
        one optimizer step per example (per_rollout) or one on the batch (batched)."""
        started = time.perf_counter()
        kept = [example for example in examples if len(example.response) > 0]
        rewards = rewards_tensor(kept)
        if self.optimization.update == "per_rollout":
            done = [self._step([example], float(example.reward)) for example in kept]
        else:
            done = [self._step(kept, float(rewards.mean()))]
        updates = iter([u for step in done for u in step.examples])
        advantages = torch.cat([step.advantages for step in done])
        first, last = done[0], done[-1]
        return UpdateStats(
            role=self.role,
            step=self.step,
            loss=_mean([s.pg_loss + s.beta * s.kl for s in done]),
            pg_loss=_mean([s.pg_loss for s in done]),
            kl=_mean([s.kl for s in done]),
            beta=first.beta,
            next_beta=last.next_beta,
            baseline=first.baseline,
            next_baseline=last.next_baseline,
            advantage_mean=float(advantages.mean()),
            advantage_std=float(advantages.std(unbiased=False)),
            grad_norm=_mean([s.grad_norm for s in done]),
            num_examples=len(kept),
            num_skipped=len(examples) - len(kept),
            num_tokens=sum(s.tokens for s in done),
            seconds=time.perf_counter() - started,
            examples=tuple(next(updates) if len(example.response) > 0 else None
                           for example in examples),
            num_steps=len(done),
        )

    def _step(self, examples: Sequence[PolicyExample], feed_baseline: float) -> _StepResult:
        """One optimizer step on `examples` (the mean of their losses): zero grads, backward,
        clip, AdamW; then β (Eq. 8) from their KL and b from `feed_baseline`."""
        rewards = rewards_tensor(examples)
        baseline = self.baseline.current(float(rewards.mean()))
        advantages = rewards - baseline
        beta = self.beta.value
        totals = self.accumulate_gradients(examples, advantages, beta)
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
        next_baseline = self.baseline.update(feed_baseline)
        # Recorded in float64, as the rewards table holds them (the loss used float32).
        records = tuple(
            ExampleUpdate(step=self.step, reward=float(example.reward), baseline=baseline,
                          advantage=float(example.reward) - baseline,
                          nll=totals.example_nll[k], kl=totals.example_kl[k], beta=beta,
                          tokens=totals.example_tokens[k], grad_norm=grad_norm)
            for k, example in enumerate(examples))
        return _StepResult(pg_loss=totals.pg_loss, kl=totals.kl, beta=beta, next_beta=next_beta,
                           baseline=baseline, next_baseline=next_baseline, grad_norm=grad_norm,
                           tokens=totals.tokens, examples=records, advantages=advantages)

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
                nll = -reduced_logprobs(policy, self.optimization.token_reduction)
                pg_loss = (batch_advantages * nll).sum() / count
                kl_term = kl.sum() / count
                (pg_loss + beta * kl_term).backward()
                totals.add(pg_loss, kl_term, batch, kl, nll)
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


@dataclass(frozen=True)
class _StepResult:
    pg_loss: float
    kl: float
    beta: float
    next_beta: float
    baseline: float
    next_baseline: float
    grad_norm: float
    tokens: int
    examples: tuple[ExampleUpdate, ...]
    advantages: torch.Tensor  # float32, as the loss used them


def _mean(values: list[float]) -> float:
    # A single step's value unchanged (bitwise), not re-divided.
    return values[0] if len(values) == 1 else math.fsum(values) / len(values)


@dataclass
class LossTotals:
    """Batch-level sums of the micro-batches' (already 1/N-scaled) loss terms."""

    pg_loss: float = 0.0
    kl: float = 0.0
    tokens: int = 0
    example_kl: dict[int, float] = field(default_factory=dict)  # by example index
    example_tokens: dict[int, int] = field(default_factory=dict)
    example_nll: dict[int, float] = field(default_factory=dict)

    def add(self, pg_loss: torch.Tensor, kl: torch.Tensor, batch: MicroBatch,
            rollout_kl: torch.Tensor, nll: torch.Tensor) -> None:
        self.pg_loss += float(pg_loss.detach())
        self.kl += float(kl.detach())
        self.tokens += int(batch.response_mask.sum())
        tokens = batch.response_mask.sum(dim=1).tolist()
        for row, index in enumerate(batch.indices):
            self.example_kl[index] = float(rollout_kl[row].detach())
            self.example_tokens[index] = int(tokens[row])
            self.example_nll[index] = float(nll[row].detach())


def reduced_logprobs(policy: TokenLogprobs, reduction: str) -> torch.Tensor:
    """log π(y|·) per rollout: the token sum (Eq. 7 literally) or the token mean (the published
    loss, on the same per-token scale as the KL)."""
    total = policy.sequence_logprobs()
    if reduction == "sum":
        return total
    return total / policy.mask.sum(dim=1).to(total.dtype)


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
