"""The sign test of the whole loop: a few iReasoner iterations on the miniature world (the
flow, its rewards, advantages and update, as `ireasoner train` runs them) move the Solver's
log-probability toward each group's dominant answer: its rollouts that gave it gain more
(per token) than those that did not. Measured as a difference because the per-rollout update
moves every sampled trace (world model v3, lr 2e-4: dominant -0.0035, others -0.0654); with
the advantage's sign flipped (rewarding disagreement) the order reverses (-0.0248 vs -0.0124)
and this test fails."""

from pathlib import Path

import polars as pl
import torch
from peft import PeftModel

from ireasoner.data.sources import load_images
from ireasoner.inspect.queries import read_iterations
from ireasoner.model.loading import load_backbone
from ireasoner.pipeline.run import run_config
from ireasoner.policy.batch import iter_micro_batches, response_ids
from ireasoner.policy.logprobs import forward_logprobs
from ireasoner.prompts import render, solver_text
from storage import RunStore

REPO = Path(__file__).resolve().parents[3]
WORLD = str(REPO / "configs" / "world.yaml")
ITERATIONS = 3
# lr 2e-4 (10x configs/world.yaml's): three iterations must move the log-probs far enough
# apart for the sign to be read.
SIGN_RUN = [f"schedule.iterations={ITERATIONS}", "optimization.lr=2e-4", "schedule.images_per_iteration=3",
            "proposer.update_every=100", "rewards.warmup_fraction=0",
            "rewards.ramp_fraction=0.34", "data.synthetic_count=16"]


def group_rollouts(store: RunStore) -> pl.DataFrame:
    """Every rollout of a group that has a dominant answer, flagged `dominant` when it gave it."""
    iterations = list(range(1, ITERATIONS + 1))
    keys = ["iteration", "image_index"]
    groups = read_iterations(store, "groups", iterations).select(
        *keys, "question", "dominant_answer").drop_nulls("dominant_answer")
    rewards = read_iterations(store, "rewards", iterations).select(
        *keys, "rollout_index", "image_id", "answer")
    rollouts = read_iterations(store, "rollouts", iterations).select(
        *keys, "rollout_index", "token_ids", "finish_reason")
    return (rewards.join(groups, on=keys)
            .with_columns(dominant=(pl.col("answer") == pl.col("dominant_answer")).fill_null(False))
            .join(rollouts, on=[*keys, "rollout_index"]))


@torch.no_grad()
def mean_token_logprob(model, processor, rows: pl.DataFrame, images, cfg) -> torch.Tensor:
    eos = processor.tokenizer.eos_token_id
    prompts = [render(processor, solver_text(cfg.solver, q)) for q in rows["question"]]
    responses = [response_ids(t, f, eos) for t, f in zip(rows["token_ids"], rows["finish_reason"],
                                                          strict=True)]
    values = []
    for batch in iter_micro_batches(processor, [images[i] for i in rows["image_id"]], prompts,
                                    responses, 16):
        out = forward_logprobs(model, batch)
        values.append(out.sequence_logprobs() / out.mask.sum(dim=1))
    return torch.cat(values)


def test_a_few_world_iterations_move_the_solver_toward_the_dominant_answers(tmp_path, training_cli):
    run = tmp_path / "run"
    training_cli.finish(training_cli.start(WORLD, [*SIGN_RUN, f"storage.run_dir={run}"]))
    store = RunStore(run)
    cfg = run_config(store)
    rows = group_rollouts(store)
    assert rows["dominant"].sum() >= 10 and (~rows["dominant"]).sum() >= 10, \
        "too few rollouts on either side to measure anything"
    images = {record.image_id: record.image for record in load_images(cfg.data).records}
    backbone = load_backbone(cfg.model)
    before = mean_token_logprob(backbone.model, backbone.processor, rows, images, cfg)
    adapter = store.checkpoints()[-1][1] / "adapters" / "solver"
    policy = PeftModel.from_pretrained(backbone.model, adapter).eval()
    after = mean_token_logprob(policy, backbone.processor, rows, images, cfg)
    change = after - before
    dominant = torch.tensor(rows["dominant"].to_list())
    toward, away = change[dominant].mean().item(), change[~dominant].mean().item()
    print(f"mean token log-prob change: {dominant.sum()} dominant-answer rollouts {toward:+.4f}, "
          f"{(~dominant).sum()} others {away:+.4f}")
    assert toward > away, (f"the loop moved the dominant answers' log-prob by {toward:+.4f} per "
                           f"token, the others' by {away:+.4f}: away from the consensus")
