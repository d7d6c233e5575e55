"""The stage before the first iteration (iteration 0): what a run records once.

    skips            the images the source refused, with the reasons (nothing lost silently)
    model_path       the resolved backbone, in the manifest (export and evaluation load it)
    checkpoint 0     the fresh adapters and role trainers: the state iteration 1 starts from

Each part is done only if missing, so a run opened by `ireasoner sft` (which writes its own
checkpoint 0) or by an earlier version keeps what it has.
"""

from __future__ import annotations

from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.tables import SKIPS


def prepare(ctx: RunContext, iteration: int = 0) -> dict:
    store = ctx.store
    wrote = []
    if not store.has_table(SKIPS.name, 0):
        skipped = ctx.image_set.skipped
        rows = [dict(iteration=0, stage="data", ref=s.source_ref, reason=s.reason,
                     detail=s.detail) for s in skipped]
        store.write_table(SKIPS.name, 0, SKIPS.build(rows))
        wrote.append(f"skips ({len(rows)})")
    if not store.manifest().get("model_path"):
        store.update_manifest(model_path=ctx.backbone.path)
        wrote.append("model_path")
    if store.completed_iterations() == 0 and not store.checkpoints():
        ctx.save_checkpoint(0)
        wrote.append("checkpoint 0")
    return {"wrote": wrote}
