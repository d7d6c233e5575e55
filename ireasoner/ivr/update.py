"""The IVR-R1 update stage: GRPO on the on-policy rollouts plus the shaped objective on the kept
rectified ones, then the checkpoint and the iteration's metrics row.

A rectified rollout joins its source group for the advantages (A over the G rollouts and the
group's kept rectifications together), so a corrected trace is rewarded relative to the failures
it replaces; it is scored as a response to the Solver prompt, as the on-policy ones are.
"""

from __future__ import annotations

import polars as pl
import torch

from ireasoner.policy.grpo import GRPOExample, GRPOStats, group_advantages
from ireasoner.prompts import render, solver_text
from ireasoner.seeding import derive_seed
from ireasoner.stages.context import RunContext
from ireasoner.stages.update import (
    common_metrics,
    engine_asleep,
    mean_or_none,
    response_ids,
    stage_seconds,
)
from storage.schemas import make_table

IVR_STAGES = ("propose", "solve", "score", "localise", "rectify")


def update(ctx: RunContext, iteration: int) -> dict:
    ctx.restore()
    examples = _examples(ctx, iteration)
    stats = None
    with engine_asleep(ctx):
        if examples:
            # LoRA dropout draws from torch's global generator: seeded per iteration for resume.
            torch.manual_seed(derive_seed(ctx.config.trainer.seed, iteration, "solver"))
            stats = ctx.trainers["solver"].update(examples)
    ctx.save_checkpoint(iteration)
    ctx.store.write_table("metrics", iteration, make_table("metrics", [metrics_row(ctx, iteration, stats)]))
    if stats is None:
        return {"solver": None}
    return {"solver": {"loss": stats.loss, "kl": stats.kl, "beta": stats.beta,
                       "examples": stats.num_examples, "off_policy": stats.num_off_policy}}


def _examples(ctx: RunContext, iteration: int) -> list[GRPOExample]:
    store, processor = ctx.store, ctx.backbone.processor
    eos = processor.tokenizer.eos_token_id
    questions = {q["image_index"]: q for q in store.read_table("questions", iteration).to_pylist()}
    rewards = {(r["image_index"], r["rollout_index"]): r["reward"]
               for r in store.read_table("ivr_rewards", iteration).to_pylist()}
    samples = [(r, rewards[(r["image_index"], r["rollout_index"])], False)
               for r in store.read_table("rollouts", iteration).to_pylist()]
    samples += [(r, r["reward"], True)
                for r in store.read_table("rectified", iteration).to_pylist() if r["kept"]]
    examples = []
    for k in sorted({row["image_index"] for row, _, _ in samples}):
        group = [sample for sample in samples if sample[0]["image_index"] == k]
        advantages = group_advantages(torch.tensor([reward for _, reward, _ in group]),
                                      ctx.config.ivr.advantage_epsilon)
        prompt = render(processor, solver_text(ctx.config.solver, questions[k]["question"]))
        for (row, _, off_policy), advantage in zip(group, advantages.tolist(), strict=True):
            examples.append(GRPOExample(
                image=ctx.image(row["image_id"]), prompt=prompt,
                response=response_ids(row["token_ids"], row["finish_reason"], eos),
                advantage=advantage, off_policy=off_policy))
    return examples


def metrics_row(ctx: RunContext, iteration: int, stats: GRPOStats | None) -> dict:
    """The iReasoner columns that apply, the IVR-R1 ones, the update and stage wall times."""
    store = ctx.store
    rewards = pl.from_arrow(store.read_table("ivr_rewards", iteration))
    rectified = pl.from_arrow(store.read_table("rectified", iteration))
    row = common_metrics(store, iteration, rewards)
    row.update(
        r_format=mean_or_none(rewards["r_format"]), r_acc=mean_or_none(rewards["r_acc"]),
        ivr_reward=mean_or_none(rewards["reward"]), erosion_rate=mean_or_none(rewards["eroded"]),
        critiques=float(store.read_table("critiques", iteration).num_rows),
        rectified_kept=float(rectified["kept"].sum()) if rectified.height else 0.0,
        rectify_success=_success_per_round(rectified, ctx.config.ivr.rectify_rounds,
                                           ctx.config.ivr.erosion_threshold),
        proposer_updated=False,
    )
    if stats is not None:
        row.update(solver_loss=stats.loss, solver_pg_loss=stats.pg_loss, solver_kl=stats.kl,
                   solver_beta=stats.beta, solver_grad_norm=stats.grad_norm,
                   solver_tokens=float(stats.num_tokens),
                   shaped_token_share=stats.shaped_token_share)
    row.update(stage_seconds(store, iteration, IVR_STAGES,
                             stats.seconds if stats is not None else 0.0))
    return row


def _success_per_round(rectified: pl.DataFrame, rounds: int, threshold: float
                       ) -> list[float | None]:
    """The share of each round's attempts (1..M) that reached τ_c; None: no attempt."""
    out = []
    for number in range(1, rounds + 1):
        attempts = rectified.filter(pl.col("round") == number) if rectified.height else rectified
        out.append(float((attempts["reward"] >= threshold).mean()) if attempts.height else None)
    return out
