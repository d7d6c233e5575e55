"""Stage 3: parse every rollout, embed its steps, score the groups (spec §2-3).

`score_iteration` is a function of stored tables alone, so offline rescoring (`ireasoner
rescore`) runs exactly the code the training ran, with no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from ireasoner.answers import normalise_answer
from ireasoner.embeddings import StepEmbedder
from ireasoner.parsing import parse_trace
from ireasoner.policy.update import EmaBaseline
from ireasoner.rewards import RewardConfig, score_batch
from storage.schemas import make_table


@dataclass(frozen=True)
class ScoredIteration:
    steps: pa.Table
    rewards: pa.Table
    groups: pa.Table


def score_iteration(questions: pa.Table, rollouts: pa.Table, embedder: StepEmbedder,
                    config: RewardConfig, iteration: int, baseline: EmaBaseline) -> ScoredIteration:
    """Rewards of one iteration. `baseline` is the Solver's EMA baseline as it stands before
    this iteration's update (it is read, not advanced); advantage = r_sol - its value."""
    rollout_rows = sorted(rollouts.to_pylist(), key=lambda r: (r["image_index"], r["rollout_index"]))
    parses = [parse_trace(r["text"] or "", config.max_steps) for r in rollout_rows]
    answers = [None if cut_at_limit(p, r) else normalise_answer(p.answer)
               for p, r in zip(parses, rollout_rows, strict=True)]
    step_texts = [step for p in parses for step in p.steps]
    embedded = embedder.embed(step_texts) if step_texts else np.zeros((0, 1), np.float32)
    offsets = np.cumsum([0] + [len(p.steps) for p in parses])
    per_rollout = [embedded[offsets[i]:offsets[i + 1]] for i in range(len(parses))]

    image_indices = sorted({r["image_index"] for r in rollout_rows})
    members = {k: [i for i, r in enumerate(rollout_rows) if r["image_index"] == k]
               for k in image_indices}
    groups = [([answers[i] for i in members[k]], [per_rollout[i] for i in members[k]],
               [parses[i].words_before_answer for i in members[k]]) for k in image_indices]
    scores = score_batch(groups, iteration, config) if groups else []
    by_image = {q["image_index"]: q for q in questions.to_pylist()}
    all_rewards = [float(r) for group in scores for r in group.solver]
    b = baseline.current(torch.tensor(all_rewards)) if all_rewards else 0.0

    step_rows, reward_rows, group_rows = [], [], []
    for k, group in zip(image_indices, scores, strict=True):
        question = by_image[k]
        for local, i in enumerate(members[k]):
            rollout, parse = rollout_rows[i], parses[i]
            reward_rows.append(dict(
                iteration=iteration, image_index=k, rollout_index=rollout["rollout_index"],
                image_id=rollout["image_id"], parse_status=parse.status,
                answer_raw=parse.answer, answer=answers[i], num_steps=len(parse.steps),
                steps_total=parse.steps_total, words_before_answer=parse.words_before_answer,
                in_group=bool(group.in_group[local]), r_ans=float(group.answer[local]),
                r_step=float(group.step[local]), r_sol=float(group.solver[local]),
                advantage=float(group.solver[local]) - b,
            ))
            for j, text in enumerate(parse.steps):
                step_rows.append(dict(
                    iteration=iteration, image_index=k, rollout_index=rollout["rollout_index"],
                    step_index=j + 1, text=text,
                    similarity=_float(group.step_similarity[local, j]),
                    loo_similarity=_float(group.loo_similarity[local, j]),
                ))
        group_rows.append(dict(
            iteration=iteration, image_index=k, image_id=question["image_id"],
            question=question["question"], dominant_answer=group.dominant_answer,
            valid_answers=sum(answers[i] is not None for i in members[k]),
            entropy=float(group.entropy), density=float(group.density),
            group_fraction=float(group.group_fraction), proposer_reward=float(group.proposer),
            lam=float(group.lam), valid_positions=int(group.valid_positions),
            mean_steps=float(group.mean_steps),
            mean_step_similarity=_float(group.mean_step_similarity),
            disagreement=[_float(d) for d in group.disagreement],
        ))
    return ScoredIteration(steps=make_table("steps", step_rows),
                           rewards=make_table("rewards", reward_rows),
                           groups=make_table("groups", group_rows))


def cut_at_limit(parse, rollout: dict) -> bool:
    """An answer tag left open is tolerated when the model stopped by itself, but not when the
    token limit cut it: then the answer itself may be cut ("84</an")."""
    return parse.status == "truncated" and rollout["finish_reason"] == "length"


def _float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None



def score(ctx, iteration: int) -> dict:
    """The stage: score the stored rollouts of `iteration`; write steps, rewards and groups."""
    ctx.restore()
    scored = score_iteration(ctx.store.read_table("questions", iteration),
                             ctx.store.read_table("rollouts", iteration), ctx.embedder,
                             ctx.config.rewards, iteration, ctx.trainers["solver"].baseline)
    for name in ("steps", "groups", "rewards"):
        ctx.store.write_table(name, iteration, getattr(scored, name))
    return {"groups": scored.groups.num_rows, "rollouts": scored.rewards.num_rows}
