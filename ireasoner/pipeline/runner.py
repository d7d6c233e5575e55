"""Run a stage unless its artifact is already complete: the heart of resume."""

from __future__ import annotations

import time

from ireasoner.engines.server_process import ServerError
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.trainer import StageFn


def run_stage(ctx: RunContext, iteration: int, stage: str, fn: StageFn) -> dict:
    """Returns the stage's summary; a completed stage is not run again (`skipped: True`)."""
    if ctx.store.stage_done(iteration, stage):
        return {**ctx.store.stage_info(iteration, stage), "skipped": True}
    ctx.store.start_stage()
    start = time.perf_counter()
    try:
        info = fn(ctx, iteration)
    except ServerError as err:  # the server's URL is in the message; add where it happened
        raise ServerError(f"iteration {iteration}, stage {stage}: {err}") from err
    info = {**info, "seconds": round(time.perf_counter() - start, 4)}
    ctx.store.mark_done(iteration, stage, info)
    return {**info, "skipped": False}
