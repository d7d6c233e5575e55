"""The propose stage: the Proposer asks one question per image of the iteration (iReasoner;
IVR-R1 with pseudo labels)."""

from __future__ import annotations

from ireasoner.data.sources import ImageRecord, SkippedImage, decode_or_skip, images_for_iteration
from ireasoner.engines import GenerationRequest, SamplingSpec
from ireasoner.parsing import parse_question
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.tables import QUESTIONS, SKIPS
from ireasoner.prompts import proposer_text
from ireasoner.seeding import derive_seed


def decodable_images(ctx: RunContext, iteration: int
                     ) -> tuple[list[tuple[int, ImageRecord]], list[SkippedImage]]:
    """The iteration's images that decode, with their positions in its batch (seeds and
    image_index keep them, so the others sample alike), and a skip for each that does not:
    images are decoded on demand, so a bad file is found here, not when the source is listed."""
    cfg = ctx.config
    records = images_for_iteration(ctx.image_set, iteration, cfg.schedule.images_per_iteration,
                                   cfg.trainer.seed)
    return decode_or_skip(records)


def write_image_skips(ctx: RunContext, iteration: int, bad: list[SkippedImage],
                      extra: list[dict] = ()) -> None:
    """The iteration's skips table (written only when something was skipped)."""
    rows = [dict(iteration=iteration, stage="propose", ref=s.source_ref, reason=s.reason,
                 detail=s.detail) for s in bad] + list(extra)
    if rows:
        ctx.store.write_table(SKIPS.name, iteration, SKIPS.build(rows))


def propose(ctx: RunContext, iteration: int) -> dict:
    cfg = ctx.config
    records, bad = decodable_images(ctx, iteration)
    prompt = proposer_text(cfg.proposer)
    requests = [
        GenerationRequest(image=r.image, text=prompt,
                          seed=derive_seed(cfg.trainer.seed, iteration, "proposer", k))
        for k, r in records
    ]
    sampling = SamplingSpec(n=1, temperature=cfg.proposer.temperature, top_p=cfg.proposer.top_p,
                            max_new_tokens=cfg.proposer.max_new_tokens)
    outputs = ctx.engine.generate(requests, sampling, ctx.adapter("proposer"))

    rows = []
    for (k, record), request, completions in zip(records, requests, outputs, strict=True):
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
    write_image_skips(ctx, iteration, bad)
    statuses = [r["parse_status"] for r in rows]
    return {
        "images_skipped": len(bad),
        "questions_ok": statuses.count("ok"),
        "questions_fallback": sum(s.startswith("fallback") for s in statuses),
        "questions_skipped": sum(s.startswith("skipped") for s in statuses),
    }
