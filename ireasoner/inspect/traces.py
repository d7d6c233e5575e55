"""Terminal view of what the Proposer asked, what the Solver answered, and how it was scored."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from typing import Any

import polars as pl

from ireasoner.inspect.queries import (
    NotInRun,
    image_iterations,
    latest_iteration,
    read_iterations,
    require_iteration,
    require_run,
    scored_rollouts,
)
from storage import RunStore

Row = dict[str, Any]
Key = tuple[int, int]
STEP_INDENT = " " * 10


def format_traces(store: RunStore, iteration: int | None = None, image_id: str | None = None,
                  limit: int | None = None, width: int = 100) -> str:
    """Questions, rollouts and scored steps as plain text, `width` columns wide.

    Selects `iteration` (default: the latest scored one; with `image_id` alone, every iteration
    that asked about that image), optionally only `image_id`, at most `limit` questions.
    Raises NotInRun with a readable message when the run, iteration or image is missing.
    """
    iterations = _select_iterations(store, iteration, image_id)
    questions = read_iterations(store, "questions", iterations)
    if image_id is not None:
        questions = questions.filter(pl.col("image_id") == image_id)
        if questions.is_empty():
            raise NotInRun(f"image {image_id!r} is not in iteration {iteration} of {store.location}")
    questions = questions.sort("iteration", "image_index")
    if limit is not None:
        questions = questions.head(limit)

    groups = {_key(g): g for g in read_iterations(store, "groups", iterations).to_dicts()}
    rewards = _by_key(scored_rollouts(store, iterations))
    steps = _by_key(read_iterations(store, "steps", iterations).sort("step_index"))
    blocks = [_question_block(q, groups.get(_key(q)), rewards.get(_key(q), []),
                              steps.get(_key(q), []), width)
              for q in questions.to_dicts()]
    return "\n\n".join(blocks) + "\n"


def _select_iterations(store: RunStore, iteration: int | None, image_id: str | None) -> list[int]:
    if iteration is not None:
        require_iteration(store, "questions", iteration)
        return [iteration]
    if image_id is not None:
        return image_iterations(store, image_id)
    return [latest_iteration(store, "rewards")]


def _key(row: Row) -> Key:
    return row["iteration"], row["image_index"]


def _by_key(frame: pl.DataFrame) -> dict[Key, list[Row]]:
    grouped: dict[Key, list[Row]] = defaultdict(list)
    for row in frame.to_dicts():
        grouped[_key(row)].append(row)
    return grouped


def _question_block(question: Row, group: Row | None, rewards: list[Row], steps: list[Row],
                    width: int) -> str:
    title = f"=== iteration {question['iteration']} | image {question['image_index']} | " \
            f"{question['image_id']} "
    lines = [title.ljust(width, "=")]
    lines += _wrap(f"Question [{question['parse_status']}]: "
                   f"{_text(question['question'])}", width, "  ")
    if question["question"] is None:
        lines += _wrap(f"Proposer output: {_text(question['raw_output'])}", width, "  ")
    if group is not None:
        lines += _pack([f"Dominant answer: {_text(group['dominant_answer'])}",
                        f"entropy {_num(group['entropy'])}", f"density {_num(group['density'])}",
                        f"|G|/N {_num(group['group_fraction'])}",
                        f"proposer reward {_num(group['proposer_reward'])}",
                        f"lambda {_num(group['lam'])}"], width, "", "  ")
    if not rewards:
        lines.append("  (no scored rollouts)")
    steps_of = defaultdict(list)
    for step in steps:
        steps_of[step["rollout_index"]].append(step)
    for rollout in rewards:
        lines += _rollout_lines(rollout, steps_of[rollout["rollout_index"]], width)
    return "\n".join(lines)


def _rollout_lines(rollout: Row, steps: list[Row], width: int) -> list[str]:
    marker = "in group" if rollout["in_group"] else "outside"
    lines = _pack([f"Rollout {rollout['rollout_index']} [{marker}] answer: "
                   f"{_text(rollout['answer'])}",
                   f"r_ans {_num(rollout['r_ans'])}", f"r_step {_num(rollout['r_step'])}",
                   f"r_sol {_num(rollout['r_sol'])}",
                   f"advantage {_num(rollout['advantage'], signed=True)}",
                   f"finish: {_text(rollout['finish_reason'])}"], width, "  ", "      ")
    if not steps:
        lines.append(f"      (no steps parsed; parse status: {_text(rollout['parse_status'])})")
    for step in steps:
        prefix = (f"    {step['step_index']}. sim {_num(step['similarity'])} "
                  f"loo {_num(step['loo_similarity'])} | ")
        lines += _wrap(prefix + _text(step["text"]), width, STEP_INDENT)
    return lines


def _pack(fields: list[str], width: int, first: str, indent: str) -> list[str]:
    """Fields joined by " | ", broken between fields (never inside one) to fit `width`."""
    lines = [first + fields[0]]
    for field in fields[1:]:
        if len(lines[-1]) + 3 + len(field) > width:
            lines.append(indent + field)
        else:
            lines[-1] += " | " + field
    return lines


def _wrap(text: str, width: int, indent: str) -> list[str]:
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False)


def _text(value: str | None) -> str:
    return "(none)" if value is None else value


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def agreement_line(store: RunStore, span: int = 3) -> str:
    """One line: the answer agreement |G|/N (and the share of rollouts with r_step > 0) over
    the run's first `span` iterations against its last `span`: did the Solver come to agree?"""
    require_run(store)
    iterations = store.table_iterations("groups")
    if not iterations:
        raise NotInRun(f"{store.location} has no scored iteration yet")
    span = max(1, min(span, len(iterations) // 2 or 1))
    first, last = iterations[:span], iterations[-span:]

    def means(chosen: list[int]) -> tuple[float, float]:
        fraction = read_iterations(store, "groups", chosen)["group_fraction"].mean() or 0.0
        r_step = read_iterations(store, "rewards", chosen)["r_step"].fill_null(0.0)
        return fraction, float((r_step > 0).mean() or 0.0)

    (g0, s0), (g1, s1) = means(first), means(last)
    return (f"agreement |G|/N: {g0:.2f} (iterations {first[0]}-{first[-1]}) -> {g1:.2f} "
            f"(iterations {last[0]}-{last[-1]}); rollouts with r_step > 0: {s0:.0%} -> {s1:.0%}")
