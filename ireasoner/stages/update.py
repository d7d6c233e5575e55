"""Stage 4: the policy update (spec §4) — the Solver every iteration on its scored rollouts, the
Proposer every K_p iterations on the questions it asked since its last update — then the
checkpoint and the iteration's metrics row."""

from __future__ import annotations

import contextlib
import math

import polars as pl
import torch

from ireasoner.policy.update import PolicyExample, UpdateStats
from ireasoner.prompts import proposer_text, render, solver_text
from ireasoner.seeding import derive_seed
from ireasoner.stages.context import RunContext
from storage.run import STAGES
from storage.schemas import TABLES, make_table


def update(ctx: RunContext, iteration: int) -> dict:
    ctx.restore()
    cfg = ctx.config
    stats: dict[str, UpdateStats] = {}
    with engine_asleep(ctx):
        solver_examples = _solver_examples(ctx, iteration)
        if solver_examples:
            # LoRA dropout draws from torch's global generator: seeding it per iteration makes
            # the update independent of anything that ran before in this process.
            torch.manual_seed(derive_seed(cfg.trainer.seed, iteration, "solver"))
            stats["solver"] = ctx.trainers["solver"].update(solver_examples)
        if iteration % cfg.proposer.update_every == 0:
            proposer_examples = _proposer_examples(ctx, iteration)
            if proposer_examples:
                torch.manual_seed(derive_seed(cfg.trainer.seed, iteration, "proposer"))
                stats["proposer"] = ctx.trainers["proposer"].update(proposer_examples)
    ctx.save_checkpoint(iteration)
    row = metrics_row(ctx, iteration, stats)
    ctx.store.write_table("metrics", iteration, make_table("metrics", [row]))
    return {role: {"loss": s.loss, "kl": s.kl, "beta": s.beta, "examples": s.num_examples}
            for role, s in stats.items()}


@contextlib.contextmanager
def engine_asleep(ctx: RunContext):
    """Let the trainer have the GPU memory of a colocated vLLM engine during the update."""
    asleep = ctx.config.rollout.sleep_during_update and "engine" in ctx.__dict__
    if asleep:
        ctx.engine.sleep()
    try:
        yield
    finally:
        if asleep:
            ctx.engine.wake()


def response_ids(token_ids: list[int], finish_reason: str, eos_token_id: int) -> list[int]:
    """The sampled tokens plus the stop token when the sample stopped on one, so that the
    decision to stop is reinforced too (engines report tokens without the stop token)."""
    return [*token_ids, eos_token_id] if finish_reason == "stop" else list(token_ids)


def _solver_examples(ctx: RunContext, iteration: int) -> list[PolicyExample]:
    store, processor = ctx.store, ctx.backbone.processor
    eos = processor.tokenizer.eos_token_id
    questions = {q["image_index"]: q for q in store.read_table("questions", iteration).to_pylist()}
    rewards = {(r["image_index"], r["rollout_index"]): r["r_sol"]
               for r in store.read_table("rewards", iteration).to_pylist()}
    examples = []
    for rollout in store.read_table("rollouts", iteration).to_pylist():
        question = questions[rollout["image_index"]]
        examples.append(PolicyExample(
            image=ctx.image(rollout["image_id"]),
            prompt=render(processor, solver_text(ctx.config.solver, question["question"])),
            response=response_ids(rollout["token_ids"], rollout["finish_reason"], eos),
            reward=rewards[(rollout["image_index"], rollout["rollout_index"])],
        ))
    return examples


def _proposer_examples(ctx: RunContext, iteration: int) -> list[PolicyExample]:
    """Questions the Proposer itself wrote (fallbacks excluded) since its last update, each
    rewarded with g(H) of the answers it drew."""
    store, processor = ctx.store, ctx.backbone.processor
    eos = processor.tokenizer.eos_token_id
    prompt = render(processor, proposer_text(ctx.config.proposer))
    first = iteration - ctx.config.proposer.update_every + 1
    examples = []
    for it in range(max(first, 1), iteration + 1):
        rewards = {g["image_index"]: g["proposer_reward"]
                   for g in store.read_table("groups", it).to_pylist()}
        for question in store.read_table("questions", it).to_pylist():
            if question["parse_status"] != "ok" or question["image_index"] not in rewards:
                continue
            examples.append(PolicyExample(
                image=ctx.image(question["image_id"]), prompt=prompt,
                response=response_ids(question["token_ids"], question["finish_reason"], eos),
                reward=rewards[question["image_index"]],
            ))
    return examples


def metrics_row(ctx: RunContext, iteration: int, stats: dict[str, UpdateStats]) -> dict:
    """Every spec §2 diagnostic of the iteration, the update statistics, stage wall times."""
    store = ctx.store
    rewards = pl.from_arrow(store.read_table("rewards", iteration))
    groups = pl.from_arrow(store.read_table("groups", iteration))
    row = common_metrics(store, iteration, rewards)
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
    row.update(stage_seconds(store, iteration, STAGES, sum(s.seconds for s in stats.values())))
    return row


def common_metrics(store, iteration: int, rewards: pl.DataFrame) -> dict:
    """A metrics row with what every trainer fills alike: how the iteration's questions came
    about ("dataset" is a labelled question, IVR-R1) and its rollouts' count and answer rate
    (from the trainer's rewards table); every other column None."""
    status = pl.from_arrow(store.read_table("questions", iteration))["parse_status"]
    row = dict.fromkeys(TABLES["metrics"].names)
    row.update(iteration=iteration, images=float(status.len()),
               questions_ok=float(status.is_in(["ok", "dataset"]).sum()),
               questions_fallback=float(status.str.starts_with("fallback").sum()),
               questions_skipped=float(status.str.starts_with("skipped").sum()),
               rollouts=float(rewards.height),
               answer_rate=mean_or_none(rewards["answer"].is_not_null()))
    return row


def stage_seconds(store, iteration: int, stages: tuple[str, ...],
                  update_seconds: float) -> dict[str, float]:
    """`seconds_<stage>` of each completed stage, the update's own (it is still running when
    the metrics row is written), and their total."""
    seconds = {stage: store.stage_info(iteration, stage)["seconds"]
               for stage in stages if stage != "update" and store.stage_done(iteration, stage)}
    seconds["update"] = update_seconds
    return {**{f"seconds_{stage}": value for stage, value in seconds.items()},
            "seconds_total": sum(seconds.values())}


def mean_or_none(series: pl.Series) -> float | None:
    value = series.cast(pl.Float64).mean()
    return None if value is None or math.isnan(value) else float(value)


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
