"""The stages of one IVR-R1 iteration (spec §6):

    propose   labelled questions (ivr.labels: dataset), or the Proposer's (pseudo)
    solve     G rollouts per question with solver.prompt (the pipeline's shared stage)
    score     r_format, r_acc and r per rollout against the label -> ivr_rewards
    localise  a critique of every eroded rollout (r < τ_c), image shown again -> critiques
    rectify   up to M re-reasoning rounds; at most K_r kept (r >= τ_c) per group -> rectified
    update    GRPO + policy shaping (ireasoner.trainers.ivr_r1.update)

Rows are linked by (iteration, image_index, rollout_index); every seed comes from derive_seed.
"""

from __future__ import annotations

from collections import Counter

from ireasoner.answers import dominant_answer, normalise_answer
from ireasoner.engines import GenerationRequest, SamplingSpec
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.propose import decodable_images, write_image_skips
from ireasoner.pipeline.propose import propose as propose_questions
from ireasoner.pipeline.tables import QUESTIONS, ROLLOUTS, sampled_columns
from ireasoner.seeding import derive_seed
from ireasoner.trainers.ivr_r1.labels import load_labels
from ireasoner.trainers.ivr_r1.prompts import critic_text, rectifier_text
from ireasoner.trainers.ivr_r1.rewards import boxed_content, score_output
from ireasoner.trainers.ivr_r1.tables import CRITIQUES, IVR_REWARDS, RECTIFIED

Key = tuple[int, int]  # (image_index, rollout_index)
ROUND_STRIDE = 1_000_000  # seed index of a rectification: round * stride + rollout position


def propose(ctx: RunContext, iteration: int) -> dict:
    cfg = ctx.config
    if cfg.solver.num_rollouts != cfg.ivr.group_size:
        raise ValueError(f"solver.num_rollouts ({cfg.solver.num_rollouts}) must equal "
                         f"ivr.group_size ({cfg.ivr.group_size}): the solve stage samples G")
    if cfg.ivr.labels == "pseudo":
        return propose_questions(ctx, iteration)
    labels = load_labels(cfg.data, cfg.ivr)
    records, bad = decodable_images(ctx, iteration)
    rows, skips = [], []
    for k, record in records:
        label = labels.get(record.image_id)
        rows.append(dict(
            iteration=iteration, image_index=k, image_id=record.image_id,
            image_sha256=record.sha256, source_ref=record.source_ref,
            question=label.question if label else None,
            parse_status="dataset" if label else "skipped:no_label"))
        if label is None:
            skips.append(dict(iteration=iteration, stage="propose", ref=record.source_ref,
                              reason="no_label", detail=f"no question/answer for {record.image_id}"))
    ctx.store.write_table(QUESTIONS.name, iteration, QUESTIONS.build_sparse(rows))
    write_image_skips(ctx, iteration, bad, skips)
    return {"questions_dataset": len(rows) - len(skips), "questions_skipped": len(skips),
            "images_skipped": len(bad)}


def score(ctx: RunContext, iteration: int) -> dict:
    cfg = ctx.config.ivr
    questions = {q["image_index"]: q for q in ctx.store.read_table(QUESTIONS.name, iteration).to_pylist()}
    rollouts = _by_key(ctx.store.read_table(ROLLOUTS.name, iteration).to_pylist())
    dataset = load_labels(ctx.config.data, cfg) if cfg.labels == "dataset" else {}
    rows = []
    for k in sorted({key[0] for key in rollouts}):
        group = [rollouts[key] for key in sorted(rollouts) if key[0] == k]
        label, source = _label(group, questions[k]["image_id"], dataset)
        for rollout in group:
            scored = score_output(rollout["text"] or "", label, cfg.format_weight)
            rows.append(dict(
                iteration=iteration, image_index=k, rollout_index=rollout["rollout_index"],
                image_id=rollout["image_id"], label=label, label_source=source,
                answer_raw=scored.answer_raw, answer=scored.answer, r_format=scored.r_format,
                r_acc=scored.r_acc, reward=scored.reward,
                eroded=label is not None and scored.reward < cfg.erosion_threshold))
    ctx.store.write_table(IVR_REWARDS.name, iteration, IVR_REWARDS.build(rows))
    return {"rollouts": len(rows), "eroded": sum(r["eroded"] for r in rows),
            "unlabelled": sum(r["label"] is None for r in rows)}


def localise(ctx: RunContext, iteration: int) -> dict:
    cfg = ctx.config
    eroded = [r for r in ctx.store.read_table(IVR_REWARDS.name, iteration).to_pylist() if r["eroded"]]
    questions = _questions(ctx, iteration)
    rollouts = _by_key(ctx.store.read_table(ROLLOUTS.name, iteration).to_pylist())
    requests = [
        GenerationRequest(
            image=ctx.image(r["image_id"]),
            text=critic_text(cfg.ivr, questions[r["image_index"]], rollouts[_key(r)]["text"] or ""),
            seed=derive_seed(cfg.trainer.seed, iteration, "critic", _position(cfg, _key(r))))
        for r in eroded
    ]
    sampling = SamplingSpec(n=1, temperature=cfg.solver.temperature, top_p=cfg.solver.top_p,
                            max_new_tokens=cfg.ivr.critique_max_new_tokens)
    outputs = ctx.engine.generate(requests, sampling, ctx.adapter("solver")) if requests else []
    rows = [dict(iteration=iteration, image_index=r["image_index"],
                 rollout_index=r["rollout_index"], image_id=r["image_id"],
                 **sampled_columns(c, request.seed))
            for r, request, (c,) in zip(eroded, requests, outputs, strict=True)]
    ctx.store.write_table(CRITIQUES.name, iteration, CRITIQUES.build(rows))
    return {"critiques": len(rows)}


def rectify(ctx: RunContext, iteration: int) -> dict:
    """Each round rewrites the latest failed attempt of every eroded rollout whose group still
    has room; an attempt reaching τ_c is kept (first come, first kept, in key order)."""
    cfg = ctx.config
    rewards = {_key(r): r for r in ctx.store.read_table(IVR_REWARDS.name, iteration).to_pylist()}
    critiques = _by_key(ctx.store.read_table(CRITIQUES.name, iteration).to_pylist())
    rollouts = _by_key(ctx.store.read_table(ROLLOUTS.name, iteration).to_pylist())
    questions = _questions(ctx, iteration)
    latest = {key: (rollouts[key]["text"] or "", rewards[key]["reward"]) for key in sorted(critiques)}
    kept_per_group: Counter[int] = Counter()
    rows = []
    sampling = SamplingSpec(n=1, temperature=cfg.solver.temperature, top_p=cfg.solver.top_p,
                            max_new_tokens=cfg.solver.max_new_tokens)
    for round_number in range(1, cfg.ivr.rectify_rounds + 1):
        attempts = [key for key in latest if kept_per_group[key[0]] < cfg.ivr.max_rectified]
        if not attempts:
            break
        requests = [GenerationRequest(
            image=ctx.image(rewards[key]["image_id"]),
            text=rectifier_text(cfg.ivr, questions[key[0]], latest[key][0],
                                critiques[key]["text"] or ""),
            seed=derive_seed(cfg.trainer.seed, iteration, "rectifier",
                             round_number * ROUND_STRIDE + _position(cfg, key)))
            for key in attempts]
        outputs = ctx.engine.generate(requests, sampling, ctx.adapter("solver"))
        for key, request, (completion,) in zip(attempts, requests, outputs, strict=True):
            scored = score_output(completion.text, rewards[key]["label"], cfg.ivr.format_weight)
            success = scored.reward >= cfg.ivr.erosion_threshold
            kept = success and kept_per_group[key[0]] < cfg.ivr.max_rectified
            kept_per_group[key[0]] += kept
            rows.append(dict(
                iteration=iteration, image_index=key[0], rollout_index=key[1],
                round=round_number, image_id=rewards[key]["image_id"],
                **sampled_columns(completion, request.seed), answer=scored.answer,
                r_format=scored.r_format, r_acc=scored.r_acc,
                reward_before=latest[key][1], reward=scored.reward, kept=kept))
            if success:
                del latest[key]
            else:
                latest[key] = (completion.text, scored.reward)
    ctx.store.write_table(RECTIFIED.name, iteration, RECTIFIED.build(rows))
    return {"attempts": len(rows), "kept": sum(r["kept"] for r in rows)}


def _label(group: list[dict], image_id: str, dataset: dict) -> tuple[str | None, str]:
    if dataset:
        return dataset[image_id].answer, "dataset"
    answers = [normalise_answer(boxed_content(r["text"] or "")) for r in group]
    pseudo = dominant_answer(answers)
    return pseudo, "pseudo" if pseudo is not None else "none"


def _questions(ctx: RunContext, iteration: int) -> dict[int, str]:
    return {q["image_index"]: q["question"]
            for q in ctx.store.read_table(QUESTIONS.name, iteration).to_pylist()
            if q["question"] is not None}


def _key(row: dict) -> Key:
    return row["image_index"], row["rollout_index"]


def _by_key(rows: list[dict]) -> dict[Key, dict]:
    return {_key(row): row for row in rows}


def _position(cfg, key: Key) -> int:
    return key[0] * cfg.ivr.group_size + key[1]
