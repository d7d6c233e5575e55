"""The score stage: parse every rollout, embed its steps, score the groups (spec §2-3).

`score_iteration` is a function of stored tables alone, and the stage embeds steps with the
tokenizer and input-embedding table it exports into the run once (`<run>/embeddings/`), so
scoring needs no policy and offline rescoring (`ireasoner rescore`) runs exactly the code the
training ran, on the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ireasoner.answers import normalise_answer
from ireasoner.embeddings import StepEmbedder, export_embedding_table
from ireasoner.parsing import parse_trace
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.tables import QUESTIONS, ROLLOUTS
from ireasoner.rewards import RewardConfig, lambda_at, score_batch
from ireasoner.trainers.ireasoner.tables import GROUPS, REWARDS, STEPS
from storage import RunStore

EMBEDDINGS_DIR = "embeddings"
EMBEDDING_TABLE = "embed_tokens.safetensors"


@dataclass(frozen=True)
class ScoredIteration:
    steps: pa.Table
    rewards: pa.Table
    groups: pa.Table


def score_iteration(questions: pa.Table, rollouts: pa.Table, embedder: StepEmbedder,
                    config: RewardConfig, iteration: int,
                    run_iterations: int) -> ScoredIteration:
    """Rewards and diagnostics of one iteration, from its questions and rollouts alone;
    `run_iterations` (schedule.iterations) sets λ's span when it is given as fractions."""
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
    lam = lambda_at(iteration, config, run_iterations)
    scores = score_batch(groups, lam, config) if groups else []
    by_image = {q["image_index"]: q for q in questions.to_pylist()}

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
    return ScoredIteration(steps=STEPS.build(step_rows), rewards=REWARDS.build(reward_rows),
                           groups=GROUPS.build(group_rows))


def cut_at_limit(parse, rollout: dict) -> bool:
    """An answer tag left open is tolerated when the model stopped by itself, but not when the
    token limit cut it: then the answer itself may be cut ("84</an")."""
    return parse.status == "truncated" and rollout["finish_reason"] == "length"


def _float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def score(ctx: RunContext, iteration: int) -> dict:
    """The stage: score the stored rollouts of `iteration`; write steps, rewards and groups."""
    embedder = ctx.memo("step_embedder", lambda: run_embedder(ctx))
    scored = score_iteration(ctx.store.read_table(QUESTIONS.name, iteration),
                             ctx.store.read_table(ROLLOUTS.name, iteration), embedder,
                             ctx.config.rewards, iteration, ctx.config.schedule.iterations)
    for table in (STEPS, GROUPS, REWARDS):
        ctx.store.write_table(table.name, iteration, getattr(scored, table.name))
    return {"groups": scored.groups.num_rows, "rollouts": scored.rewards.num_rows}


def run_embedder(ctx: RunContext) -> StepEmbedder:
    """The step embedder on the run's exported tokenizer and embedding table, exporting them
    from the backbone first if the run has none yet (its input embeddings are frozen under
    LoRA, so the copy stays exact for the whole run)."""
    directory = embeddings_dir(ctx.store)
    if not (directory / EMBEDDING_TABLE).is_file():
        ctx.backbone.processor.tokenizer.save_pretrained(directory / "tokenizer")
        export_embedding_table(ctx.backbone.model, directory / EMBEDDING_TABLE)
    return stored_embedder(ctx.store, ctx.config.rewards.step_tokens)


def stored_embedder(store: RunStore, step_tokens: int) -> StepEmbedder:
    directory = embeddings_dir(store)
    return StepEmbedder.from_files(directory / "tokenizer", directory / EMBEDDING_TABLE,
                                   step_tokens=step_tokens)


def embeddings_dir(store: RunStore) -> Path:
    return store.root / EMBEDDINGS_DIR
