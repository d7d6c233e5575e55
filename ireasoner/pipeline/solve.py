"""The solve stage: the Solver answers each question N times, in one engine call for the
iteration (both trainers)."""

from __future__ import annotations

from ireasoner.engines import GenerationRequest, SamplingSpec
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.tables import QUESTIONS, ROLLOUTS, sampled_columns
from ireasoner.prompts import solver_text
from ireasoner.seeding import derive_seed


def solve(ctx: RunContext, iteration: int) -> dict:
    cfg = ctx.config
    questions = ctx.store.read_table(QUESTIONS.name, iteration).to_pylist()
    asked = [q for q in questions if q["question"] is not None]
    requests = [
        GenerationRequest(image=ctx.image(q["image_id"]),
                          text=solver_text(cfg.solver, q["question"]),
                          seed=derive_seed(cfg.trainer.seed, iteration, "solver", q["image_index"]))
        for q in asked
    ]
    sampling = SamplingSpec(n=cfg.solver.num_rollouts, temperature=cfg.solver.temperature,
                            top_p=cfg.solver.top_p, max_new_tokens=cfg.solver.max_new_tokens)
    outputs = ctx.engine.generate(requests, sampling, ctx.adapter("solver")) if asked else []

    rows = []
    for question, request, completions in zip(asked, requests, outputs, strict=True):
        for i, completion in enumerate(completions):
            rows.append(dict(
                iteration=iteration, image_index=question["image_index"], rollout_index=i,
                image_id=question["image_id"], **sampled_columns(completion, request.seed),
                logprob_sum=float(sum(completion.logprobs)),
                decode_errors=completion.decode_errors,
            ))
    ctx.store.write_table(ROLLOUTS.name, iteration, ROLLOUTS.build(rows))
    reasons = [r["finish_reason"] for r in rows]
    return {"rollouts": len(rows), **{f"finish_{k}": reasons.count(k) for k in sorted(set(reasons))}}
