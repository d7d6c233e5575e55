"""The evaluation flow `ireasoner-evaluate`: lmms-eval on the checkpoints of a run that have not
been evaluated yet, or on one named checkpoint. Deployed twice: `evaluate`, run by the trigger
on a published checkpoint's event (flows/events.py), and `scheduled`, a cron that fills gaps.
Running it twice evaluates nothing twice. On a GPU it waits for a slot of the global GPU limit
that training holds too (flows/limits.py)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.events import run_slug
from flows.limits import evaluation_slots
from ireasoner.eval.scheduled import evaluate_pending
from ireasoner.pipeline.run import run_config
from storage import RunStore


def _run_name() -> str:
    params = flow_run.get_parameters()
    where = str(params.get("run_dir", "")).rstrip("/").rsplit("/", 1)[-1]
    return f"evaluate@{where}:{params.get('checkpoint') or 'pending'}"


@flow(name="ireasoner-evaluate", log_prints=True, flow_run_name=_run_name)
def evaluate_run(run_dir: str = "runs/smoke", tasks: list[str] | None = None,
                 include_base: bool = True, checkpoint: str | None = None) -> list[str]:
    logger = get_run_logger()
    store = RunStore(run_dir).pull()  # at a URL: evaluated in this machine's mirror, then pushed
    cfg = run_config(store)
    with evaluation_slots(cfg.model.device):
        results = evaluate_pending(store.root, cfg, tasks=tasks, include_base=include_base,
                                   checkpoint=checkpoint or None)
    store.push()
    summary = [f"{r.checkpoint}: {len(r.rows)} rows, failed: {r.failed_tasks or 'none'}"
               for r in results]
    logger.info("evaluated %d checkpoint(s) of %s", len(results), run_dir)
    create_markdown_artifact(
        markdown="\n".join(["# Evaluation", *[f"- {s}" for s in summary]]) if summary
        else f"Nothing left to evaluate in {run_dir}.",
        key=f"{run_slug(store.location)}-evaluation", description=f"Evaluation of {run_dir}")
    return summary
