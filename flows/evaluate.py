"""The evaluation flow `ireasoner-evaluate`: lmms-eval on every checkpoint of a run that has not
been evaluated yet. Served with a cron schedule as `ireasoner-evaluate/scheduled`; running it
twice evaluates nothing twice."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.console import send_project_logs_to_prefect
from ireasoner.eval.scheduled import evaluate_pending
from ireasoner.pipeline.run import run_config
from storage import RunStore


@flow(name="ireasoner-evaluate", log_prints=True)
def evaluate_run(run_dir: str = "runs/smoke", tasks: list[str] | None = None,
                 include_base: bool = True) -> list[str]:
    send_project_logs_to_prefect()  # the project's messages in the run's logs (the UI)
    logger = get_run_logger()
    store = RunStore(run_dir).pull()  # at a URL: evaluated in this machine's mirror, then pushed
    results = evaluate_pending(store.root, run_config(store), tasks=tasks,
                               include_base=include_base)
    store.push()
    summary = [f"{r.checkpoint}: {len(r.rows)} rows, failed: {r.failed_tasks or 'none'}"
               for r in results]
    logger.info("evaluated %d checkpoint(s) of %s", len(results), run_dir)
    create_markdown_artifact(
        markdown="\n".join(["# Evaluation", *[f"- {s}" for s in summary]]) if summary
        else f"Nothing left to evaluate in {run_dir}.",
        key="evaluation", description=f"Scheduled evaluation of {run_dir}")
    return summary
