"""The IVR-R1 update stage: GRPO on the on-policy rollouts plus the shaped objective on the kept
rectified ones, then the checkpoint and the iteration's metrics row.

A rectified rollout joins its source group for the advantages (A over the G rollouts and the
group's kept rectifications together), so a corrected trace is rewarded relative to the failures
it replaces; it is scored as a response to the Solver prompt, as the on-policy ones are.
"""

from __future__ import annotations

import time

import polars as pl
import torch

from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.metrics import common_metrics, mean_or_none, stage_seconds
from ireasoner.pipeline.tables import QUESTIONS, ROLLOUTS, UPDATES
from ireasoner.policy.batch import response_ids
from ireasoner.policy.grpo import GRPOExample, GRPOStats, group_advantages
from ireasoner.prompts import render, solver_text
from ireasoner.seeding import derive_seed
from ireasoner.trainers.ivr_r1.tables import CRITIQUES, IVR_REWARDS, RECTIFIED


def update(ctx: RunContext, iteration: int) -> dict:
    started = time.perf_counter()
    ctx.restore()
    samples, examples = _examples(ctx, iteration)
    stats = None
    with ctx.engine_asleep():
        if examples:
            # LoRA dropout draws from torch's global generator: seeded per iteration for resume.
            torch.manual_seed(derive_seed(ctx.config.trainer.seed, iteration, "solver"))
            stats = ctx.trainers["solver"].update(examples)
    rows = _update_rows(iteration, samples, examples, stats) if stats is not None else []
    ctx.store.write_table(UPDATES.name, iteration, UPDATES.build_sparse(rows))
    ctx.save_checkpoint(iteration)
    row = metrics_row(ctx, iteration, stats, time.perf_counter() - started)
    ctx.store.write_table(ctx.trainer.metrics.name, iteration, ctx.trainer.metrics.build([row]))
    if stats is None:
        return {"solver": None}
    return {"solver": {"loss": stats.loss, "kl": stats.kl, "beta": stats.beta,
                       "examples": stats.num_examples, "off_policy": stats.num_off_policy}}


# (rollouts or rectified row, its reward, its group's mean reward, off-policy)
Sample = tuple[dict, float, float, bool]


def _examples(ctx: RunContext, iteration: int) -> tuple[list[Sample], list[GRPOExample]]:
    store, processor = ctx.store, ctx.backbone.processor
    eos = processor.tokenizer.eos_token_id
    questions = {q["image_index"]: q
                 for q in store.read_table(QUESTIONS.name, iteration).to_pylist()}
    rewards = {(r["image_index"], r["rollout_index"]): r["reward"]
               for r in store.read_table(IVR_REWARDS.name, iteration).to_pylist()}
    candidates = [(r, rewards[(r["image_index"], r["rollout_index"])], False)
                  for r in store.read_table(ROLLOUTS.name, iteration).to_pylist()]
    candidates += [(r, r["reward"], True)
                   for r in store.read_table(RECTIFIED.name, iteration).to_pylist() if r["kept"]]
    samples, examples = [], []
    for k in sorted({row["image_index"] for row, _, _ in candidates}):
        group = [sample for sample in candidates if sample[0]["image_index"] == k]
        group_rewards = torch.tensor([reward for _, reward, _ in group])
        advantages = group_advantages(group_rewards, ctx.config.ivr.advantage_epsilon)
        prompt = render(processor, solver_text(ctx.config.solver, questions[k]["question"]))
        for (row, reward, off_policy), advantage in zip(group, advantages.tolist(), strict=True):
            samples.append((row, reward, float(group_rewards.mean()), off_policy))
            examples.append(GRPOExample(
                image=ctx.image(row["image_id"]), prompt=prompt,
                response=response_ids(row["token_ids"], row["finish_reason"], eos),
                advantage=advantage, off_policy=off_policy))
    return samples, examples


def _update_rows(iteration: int, samples: list[Sample], examples: list[GRPOExample],
                 stats: GRPOStats) -> list[dict]:
    """One updates row per example trained on: GRPO's baseline is its group's mean reward."""
    return [dict(iteration=iteration, role="solver", step=stats.step, source_iteration=iteration,
                 image_index=row["image_index"], rollout_index=row["rollout_index"],
                 off_policy=off_policy, reward=reward, baseline=mean, advantage=example.advantage,
                 kl=kl, beta=stats.beta, tokens=tokens)
            for (row, reward, mean, off_policy), example, kl, tokens
            in zip(samples, examples, stats.example_kl, stats.example_tokens, strict=True)
            if tokens is not None]


def metrics_row(ctx: RunContext, iteration: int, stats: GRPOStats | None,
                seconds: float) -> dict:
    """The common columns, the IVR-R1 ones, the update and stage wall times."""
    store = ctx.store
    rewards = pl.from_arrow(store.read_table(IVR_REWARDS.name, iteration))
    rectified = pl.from_arrow(store.read_table(RECTIFIED.name, iteration))
    row = common_metrics(store, iteration, ctx.trainer.metrics, rewards)
    row.update(
        r_format=mean_or_none(rewards["r_format"]), r_acc=mean_or_none(rewards["r_acc"]),
        ivr_reward=mean_or_none(rewards["reward"]), erosion_rate=mean_or_none(rewards["eroded"]),
        critiques=float(store.read_table(CRITIQUES.name, iteration).num_rows),
        rectified_kept=float(rectified["kept"].sum()) if rectified.height else 0.0,
        rectify_success=_success_per_round(rectified, ctx.config.ivr.rectify_rounds,
                                           ctx.config.ivr.erosion_threshold),
    )
    if stats is not None:
        row.update(solver_loss=stats.loss, solver_pg_loss=stats.pg_loss, solver_kl=stats.kl,
                   solver_beta=stats.beta, solver_grad_norm=stats.grad_norm,
                   solver_tokens=float(stats.num_tokens),
                   shaped_token_share=stats.shaped_token_share)
    row.update(stage_seconds(store, iteration, ctx.trainer.stage_names, seconds))
    return row


def _success_per_round(rectified: pl.DataFrame, rounds: int, threshold: float
                       ) -> list[float | None]:
    """The share of each round's attempts (1..M) that reached τ_c; None: no attempt."""
    out = []
    for number in range(1, rounds + 1):
        attempts = rectified.filter(pl.col("round") == number) if rectified.height else rectified
        out.append(float((attempts["reward"] >= threshold).mean()) if attempts.height else None)
    return out
