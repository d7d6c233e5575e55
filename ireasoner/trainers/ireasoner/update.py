"""The update stage (spec §4): the Solver every iteration on its scored rollouts, image by image
and rollout by rollout (the order of the per-rollout steps), the Proposer every K_p iterations
on the question(s) of that iteration (`proposer.train_on: update_iteration`) or on every
question since its last update (`since_last_update`); each example's advantage from the role's
own baseline (recorded in the updates table); then the checkpoint and the iteration's metrics
row."""

from __future__ import annotations

import time

import polars as pl
import torch

from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.metrics import common_metrics, mean_or_none, stage_seconds
from ireasoner.pipeline.tables import QUESTIONS, ROLLOUTS, UPDATES
from ireasoner.policy.batch import response_ids
from ireasoner.policy.update import PolicyExample, UpdateStats
from ireasoner.prompts import proposer_text, render, solver_text
from ireasoner.seeding import derive_seed
from ireasoner.trainers.ireasoner.tables import GROUPS, REWARDS

# (source iteration, image_index, rollout_index or None): which sample an example is.
SampleKey = tuple[int, int, int | None]


def update(ctx: RunContext, iteration: int) -> dict:
    started = time.perf_counter()
    ctx.restore()
    cfg = ctx.config
    stats: dict[str, UpdateStats] = {}
    rows: list[dict] = []
    with ctx.engine_asleep():
        for role, gather, due in (
                ("solver", _solver_examples, True),
                ("proposer", _proposer_examples, iteration % cfg.proposer.update_every == 0)):
            keys, examples = gather(ctx, iteration) if due else ([], [])
            if not examples:
                continue
            # LoRA dropout draws from torch's global generator: seeding it per iteration makes
            # the update independent of anything that ran before in this process.
            torch.manual_seed(derive_seed(cfg.trainer.seed, iteration, role))
            stats[role] = ctx.trainers[role].update(examples)
            rows += update_rows(iteration, role, keys, stats[role])
    ctx.store.write_table(UPDATES.name, iteration, UPDATES.build_sparse(rows))
    ctx.save_checkpoint(iteration)
    row = metrics_row(ctx, iteration, stats, time.perf_counter() - started)
    ctx.store.write_table(ctx.trainer.metrics.name, iteration, ctx.trainer.metrics.build([row]))
    return {role: {"loss": s.loss, "kl": s.kl, "beta": s.beta, "examples": s.num_examples}
            for role, s in stats.items()}


def update_rows(iteration: int, role: str, keys: list[SampleKey],
                stats: UpdateStats) -> list[dict]:
    """The updates-table rows of one role's update: one per example it trained on."""
    return [dict(iteration=iteration, role=role, step=done.step, source_iteration=key[0],
                 image_index=key[1], rollout_index=key[2], off_policy=False,
                 reward=done.reward, baseline=done.baseline, advantage=done.advantage,
                 kl=done.kl, beta=done.beta, tokens=done.tokens, nll=done.nll,
                 grad_norm=done.grad_norm)
            for key, done in zip(keys, stats.examples, strict=True) if done is not None]


def _solver_examples(ctx: RunContext, iteration: int) -> tuple[list[SampleKey],
                                                                 list[PolicyExample]]:
    store, processor = ctx.store, ctx.backbone.processor
    eos = processor.tokenizer.eos_token_id
    questions = {q["image_index"]: q
                 for q in store.read_table(QUESTIONS.name, iteration).to_pylist()}
    rewards = {(r["image_index"], r["rollout_index"]): r["r_sol"]
               for r in store.read_table(REWARDS.name, iteration).to_pylist()}
    keys, examples = [], []
    rollouts = store.read_table(ROLLOUTS.name, iteration).to_pylist()
    if ctx.config.optimization.update == "per_rollout":
        # The steps' order: image by image, rollout by rollout (the batched step keeps the
        # table's order, which its sum was always taken in).
        rollouts.sort(key=lambda r: (r["image_index"], r["rollout_index"]))
    for rollout in rollouts:
        question = questions[rollout["image_index"]]
        keys.append((iteration, rollout["image_index"], rollout["rollout_index"]))
        examples.append(PolicyExample(
            image=ctx.image(rollout["image_id"]),
            prompt=render(processor, solver_text(ctx.config.solver, question["question"])),
            response=response_ids(rollout["token_ids"], rollout["finish_reason"], eos),
            reward=rewards[(rollout["image_index"], rollout["rollout_index"])],
        ))
    return keys, examples


def _proposer_examples(ctx: RunContext, iteration: int) -> tuple[list[SampleKey],
                                                                   list[PolicyExample]]:
    """Questions the Proposer itself wrote (fallbacks excluded) in this iteration, or since its
    last update (proposer.train_on), each rewarded with g(H_p) of the answers it drew."""
    store, processor = ctx.store, ctx.backbone.processor
    eos = processor.tokenizer.eos_token_id
    prompt = render(processor, proposer_text(ctx.config.proposer))
    since_last = ctx.config.proposer.train_on == "since_last_update"
    first = iteration - ctx.config.proposer.update_every + 1 if since_last else iteration
    keys, examples = [], []
    for it in range(max(first, 1), iteration + 1):
        rewards = {g["image_index"]: g["proposer_reward"]
                   for g in store.read_table(GROUPS.name, it).to_pylist()}
        for question in store.read_table(QUESTIONS.name, it).to_pylist():
            if question["parse_status"] != "ok" or question["image_index"] not in rewards:
                continue
            keys.append((it, question["image_index"], None))
            examples.append(PolicyExample(
                image=ctx.image(question["image_id"]), prompt=prompt,
                response=response_ids(question["token_ids"], question["finish_reason"], eos),
                reward=rewards[question["image_index"]],
            ))
    return keys, examples


def metrics_row(ctx: RunContext, iteration: int, stats: dict[str, UpdateStats],
                seconds: float) -> dict:
    """Every spec §2 diagnostic of the iteration, the update statistics, stage wall times."""
    store = ctx.store
    rewards = pl.from_arrow(store.read_table(REWARDS.name, iteration))
    groups = pl.from_arrow(store.read_table(GROUPS.name, iteration))
    row = common_metrics(store, iteration, ctx.trainer.metrics, rewards)
    row.update(
        steps_rate=mean_or_none(rewards["num_steps"] > 0),
        mean_steps=mean_or_none(rewards["num_steps"]),
        r_ans=mean_or_none(rewards["r_ans"]), r_step=mean_or_none(rewards["r_step"]),
        r_sol=mean_or_none(rewards["r_sol"]),
        entropy=mean_or_none(groups["entropy"]),
        group_fraction=mean_or_none(groups["group_fraction"]),
        proposer_reward=mean_or_none(groups["proposer_reward"]),
        step_similarity=mean_or_none(groups["mean_step_similarity"]),
        valid_positions=mean_or_none(groups["valid_positions"]), lam=mean_or_none(groups["lam"]),
        disagreement=_mean_lists(groups["disagreement"].to_list()),
        proposer_updated="proposer" in stats,
    )
    for role, s in stats.items():
        row.update({f"{role}_loss": s.loss, f"{role}_pg_loss": s.pg_loss, f"{role}_kl": s.kl,
                    f"{role}_beta": s.beta, f"{role}_baseline": s.baseline,
                    f"{role}_grad_norm": s.grad_norm})
    if "solver" in stats:
        row["solver_tokens"] = float(stats["solver"].num_tokens)
    if "proposer" in stats:
        row["proposer_examples"] = float(stats["proposer"].num_examples)
    row.update(stage_seconds(store, iteration, ctx.trainer.stage_names, seconds))
    return row


def _mean_lists(lists: list[list[float | None] | None]) -> list[float | None] | None:
    """Position-wise mean of the groups' D_j, ignoring undefined entries."""
    rows = [r for r in lists if r is not None]
    if not rows:
        return None
    width = max(len(r) for r in rows)
    out = []
    for j in range(width):
        values = [r[j] for r in rows if j < len(r) and r[j] is not None]
        out.append(sum(values) / len(values) if values else None)
    return out
