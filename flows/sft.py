"""The flow `ireasoner-sft`: the IVR-R1 cold start. It fine-tunes the Solver adapter on
`ivr.sft_data` and writes the result as the run's checkpoint 0, the state every RL run starts
from; training then continues the same run:

    ireasoner sft   --config configs/ivr_r1.yaml --set ivr.sft_data=traces.parquet --run-dir RUN
    ireasoner train --config configs/ivr_r1.yaml --set ivr.sft_data=traces.parquet --run-dir RUN --resume
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.console import send_project_logs_to_prefect
from ireasoner.config import load_config
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.run import open_run
from ireasoner.trainers.ivr_r1.sft import read_traces, train_solver_adapter
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore


@flow(name="ireasoner-sft", log_prints=True)
def sft(config: list[str] | str = "configs/ivr_r1_smoke.yaml", overrides: list[str] | None = None,
        run_dir: str | None = None) -> dict:
    """Creates the run (refused if it exists: its checkpoint 0 would no longer be the start of
    what was trained) and writes checkpoint 0 with the fine-tuned Solver adapter."""
    send_project_logs_to_prefect()  # the project's messages in the run's logs (the UI)
    logger = get_run_logger()
    overrides = list(overrides or [])
    if run_dir is not None:
        overrides.append(f"storage.run_dir={run_dir}")
    cfg = load_config(config, overrides)
    if not cfg.ivr.sft_data:
        raise ValueError("ivr.sft_data is not set: nothing to fine-tune on")
    store = RunStore(cfg.storage.run_dir)
    with store.lock(cfg.storage.lease_seconds):
        cfg, trainer = open_run(store, cfg, trainer_spec, resume=False)
        ctx = RunContext(cfg, store, trainer)
        traces = read_traces(cfg.ivr.sft_data, cfg, ctx.backbone)
        if not traces.examples:
            raise ValueError(f"{cfg.ivr.sft_data}: no usable trace (skipped: {traces.skipped})")
        stats = train_solver_adapter(ctx.policy, ctx.backbone, traces, cfg)
        checkpoint = ctx.save_checkpoint(0)
        store.push()
    logger.info("SFT: %d traces (%s skipped), %d steps, loss %.4f -> %.4f; wrote %s",
                len(traces.examples), traces.skipped or "none", stats.steps, stats.losses[0],
                stats.losses[-1], checkpoint)
    return {"run_dir": store.location, "examples": len(traces.examples),
            "skipped": traces.skipped, "steps": stats.steps, "losses": stats.losses}
