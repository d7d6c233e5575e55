"""`ireasoner serve`: one long-lived process serving the deployments to a Prefect server
(PREFECT_API_URL must point at it) on this host. For a work pool whose workers run training on
one host and evaluation on another, use prefect.yaml (`prefect deploy --all`, README).

    ireasoner/train                   run with --param config=configs/smoke.yaml (and overrides,
                                      run_dir); the same parameters again resume the run
    ireasoner-evaluate/evaluate       triggered by each kept checkpoint's event
    ireasoner-evaluate/scheduled      cron; evaluates checkpoints not evaluated yet
"""

from __future__ import annotations

from prefect import serve

from flows.evaluate import evaluate_run
from flows.events import checkpoint_trigger
from flows.train import train


def serve_deployments(eval_cron: str = "0 * * * *", eval_run_dir: str = "runs/smoke") -> None:
    serve(
        train.to_deployment(name="train", parameters={"config": "configs/smoke.yaml"}),
        evaluate_run.to_deployment(name="evaluate", triggers=[checkpoint_trigger()]),
        evaluate_run.to_deployment(name="scheduled", cron=eval_cron,
                                   parameters={"run_dir": eval_run_dir}),
    )
