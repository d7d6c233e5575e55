"""The propose stage: the Proposer asks one question per image of the iteration (iReasoner;
IVR-R1 with pseudo labels)."""

from __future__ import annotations

from ireasoner.data.sources import images_for_iteration
from ireasoner.engines import GenerationRequest, SamplingSpec
from ireasoner.parsing import parse_question
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.tables import QUESTIONS
from ireasoner.prompts import proposer_text
from ireasoner.seeding import derive_seed


def propose(ctx: RunContext, iteration: int) -> dict:
    cfg = ctx.config
    records = images_for_iteration(ctx.image_set, iteration, cfg.schedule.images_per_iteration,
                                   cfg.trainer.seed)
    prompt = proposer_text(cfg.proposer)
    requests = [
        GenerationRequest(image=r.image, text=prompt,
                          seed=derive_seed(cfg.trainer.seed, iteration, "proposer", k))
        for k, r in enumerate(records)
    ]
    sampling = SamplingSpec(n=1, temperature=cfg.proposer.temperature, top_p=cfg.proposer.top_p,
                            max_new_tokens=cfg.proposer.max_new_tokens)
    outputs = ctx.engine.generate(requests, sampling, ctx.adapter("proposer"))

    rows = []
    for k, (record, request, completions) in enumerate(zip(records, requests, outputs, strict=True)):
        completion = completions[0]
        parsed = parse_question(completion.text)
        question, status = parsed.question, parsed.status
        if status == "truncated" and completion.finish_reason == "length":
            question = None  # cut by the token limit: possibly half a question
        if question is None:
            # Counted by status; a fallback question is never used to train the Proposer.
            if cfg.proposer.on_unparsable == "fallback_question":
                question, status = cfg.proposer.fallback_question, f"fallback:{parsed.status}"
            else:
                status = f"skipped:{parsed.status}"
        rows.append(dict(
            iteration=iteration, image_index=k, image_id=record.image_id,
            image_sha256=record.sha256, source_ref=record.source_ref, prompt=prompt,
            raw_output=completion.text, question=question, parse_status=status,
            rationale=parsed.rationale,
            proposer_logprob=float(sum(completion.logprobs)),
            token_ids=completion.token_ids, num_tokens=completion.num_tokens,
            finish_reason=completion.finish_reason,
            seed=request.seed,
        ))
    ctx.store.write_table(QUESTIONS.name, iteration, QUESTIONS.build(rows))
    statuses = [r["parse_status"] for r in rows]
    return {
        "questions_ok": statuses.count("ok"),
        "questions_fallback": sum(s.startswith("fallback") for s in statuses),
        "questions_skipped": sum(s.startswith("skipped") for s in statuses),
    }
