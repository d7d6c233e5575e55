"""Content of the Prefect artifacts published after each iteration (the flow publishes them:
`create_table_artifact(iteration_table(...))`, `create_markdown_artifact(iteration_markdown(...))`).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from ireasoner.inspect.queries import read_iterations, require_iteration, scored_rollouts
from storage import RunStore

QUESTION_CHARS = 80


def iteration_table(store: RunStore, iteration: int, rewards: str = "rewards",
                    max_rows: int = 50) -> list[dict[str, Any]]:
    """One row per scored rollout of `iteration` (the first `max_rows`), from the trainer's
    per-rollout rewards table `rewards`: its answer, its flags and rewards (boolean and float
    columns), the advantage its update gave it and how it finished."""
    require_iteration(store, rewards, iteration)
    questions = read_iterations(store, "questions", [iteration]).select(
        "image_index", "image_id", "question")
    rollouts = (scored_rollouts(store, [iteration], rewards).head(max_rows)
                .drop("image_id", strict=False)
                .join(questions, on="image_index", how="left", maintain_order="left"))
    shown = [name for name, dtype in rollouts.schema.items()
             if (dtype == pl.Boolean or dtype.is_float()) and name != "advantage"]
    return [{
        "image": r["image_id"],
        "question": _truncate(r["question"], QUESTION_CHARS),
        "answer": r["answer"],
        **{k: _round(r[k]) if isinstance(r[k], float) else r[k] for k in shown},
        "advantage": _round(r["advantage"]),
        "finish_reason": r["finish_reason"],
    } for r in rollouts.to_dicts()]


def iteration_markdown(store: RunStore, iteration: int) -> str:
    """A few lines on `iteration`: questions, parse rates, group statistics, rewards, the
    update (when its metrics row exists) and stage wall times."""
    require_iteration(store, "questions", iteration)
    lines = [f"### Iteration {iteration}", "", _questions_line(store, iteration)]
    lines += _scores_lines(store, iteration)
    lines += _update_lines(store, iteration)
    lines += _stage_times_lines(store, iteration)
    return "\n".join(lines) + "\n"


def _questions_line(store: RunStore, iteration: int) -> str:
    status = read_iterations(store, "questions", [iteration])["parse_status"]
    ok = int((status == "ok").sum())
    fallback = int(status.str.starts_with("fallback").sum())
    skipped = int(status.str.starts_with("skipped").sum())
    return f"- Questions: {ok} ok, {fallback} fallback, {skipped} skipped"


def _scores_lines(store: RunStore, iteration: int) -> list[str]:
    if not store.has_table("rewards", iteration):
        return ["- Not scored yet"]
    rewards = read_iterations(store, "rewards", [iteration])
    groups = read_iterations(store, "groups", [iteration])
    answered = rewards["answer"].is_not_null().sum()
    with_steps = (rewards["num_steps"] > 0).sum()
    total = rewards.height
    return [
        f"- Rollouts: {total}; answer parsed {_percent(answered, total)}, steps parsed "
        f"{_percent(with_steps, total)}",
        f"- Groups: entropy {_fmt(groups['entropy'].mean())}, |G|/N "
        f"{_fmt(groups['group_fraction'].mean())}, proposer reward "
        f"{_fmt(groups['proposer_reward'].mean())}, λ {_fmt(groups['lam'].mean())}",
        f"- Mean rewards: r_ans {_fmt(rewards['r_ans'].mean())}, r_step "
        f"{_fmt(rewards['r_step'].mean())}, r_sol {_fmt(rewards['r_sol'].mean())}",
    ]


def _update_lines(store: RunStore, iteration: int) -> list[str]:
    if not store.has_table("metrics", iteration):
        return []
    metrics = read_iterations(store, "metrics", [iteration]).row(0, named=True)
    roles = [role for role in ("solver", "proposer") if metrics.get(f"{role}_loss") is not None]
    return [f"- {role.capitalize()} update: loss {_fmt(metrics[f'{role}_loss'])}, KL "
            f"{_fmt(metrics[f'{role}_kl'])}, β {_fmt(metrics[f'{role}_beta'])}"
            for role in roles]


def _stage_times_lines(store: RunStore, iteration: int) -> list[str]:
    infos = {stage: store.stage_info(iteration, stage) for stage in store.stages()
             if store.stage_done(iteration, stage)}
    times = [f"{stage} {info['seconds']:.1f} s" for stage, info in infos.items()
             if "seconds" in info]
    return ["- Stage times: " + ", ".join(times)] if times else []


def _percent(count: int, total: int) -> str:
    return f"{100 * count / total:.0f}% ({count}/{total})" if total else "n/a (0 rollouts)"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _truncate(text: str | None, chars: int) -> str | None:
    if text is None or len(text) <= chars:
        return text
    return text[:chars - 1] + "…"
