"""The sign test of the whole loop: a few iReasoner iterations on the miniature world (the
flow, its rewards, advantages and update, as `ireasoner train` runs them) raise the Solver's
log-probability of each group's dominant answer. With the advantage's sign flipped (rewarding
disagreement) the same run lowers it and this test fails."""

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
# lr 2e-4 (4x configs/world.yaml's): three iterations must move the log-probs well clear of
# zero for the sign to be read; with the advantage's sign flipped the same run lowers them.
SIGN_RUN = [f"schedule.iterations={ITERATIONS}", "optimization.lr=2e-4", "schedule.images_per_iteration=3",
            "proposer.update_every=100", "rewards.warmup_fraction=0",
            "rewards.ramp_fraction=0.34", "data.synthetic_count=16"]


def dominant_rollouts(store: RunStore) -> pl.DataFrame:
    """Every rollout whose answer is its group's dominant answer, with what scoring it needs."""
    iterations = list(range(1, ITERATIONS + 1))
    keys = ["iteration", "image_index"]
    groups = read_iterations(store, "groups", iterations).select(
        *keys, "question", "dominant_answer").drop_nulls("dominant_answer")
    rewards = read_iterations(store, "rewards", iterations).select(
        *keys, "rollout_index", "image_id", "answer")
    rollouts = read_iterations(store, "rollouts", iterations).select(
        *keys, "rollout_index", "token_ids", "finish_reason")
    return (rewards.join(groups, on=keys)
            .filter(pl.col("answer") == pl.col("dominant_answer"))
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


def test_a_few_world_iterations_raise_the_dominant_answers_logprob(tmp_path, training_cli):
    run = tmp_path / "run"
    training_cli.finish(training_cli.start(WORLD, [*SIGN_RUN, f"storage.run_dir={run}"]))
    store = RunStore(run)
    cfg = run_config(store)
    rows = dominant_rollouts(store)
    assert rows.height >= 10, "too few dominant-answer rollouts to measure anything"
    images = {record.image_id: record.image for record in load_images(cfg.data).records}
    backbone = load_backbone(cfg.model)
    before = mean_token_logprob(backbone.model, backbone.processor, rows, images, cfg)
    adapter = store.checkpoints()[-1][1] / "adapters" / "solver"
    policy = PeftModel.from_pretrained(backbone.model, adapter).eval()
    after = mean_token_logprob(policy, backbone.processor, rows, images, cfg)
    gain = (after - before).mean().item()
    print(f"dominant-answer rollouts: {rows.height}, mean token log-prob {before.mean():.4f} -> "
          f"{after.mean():.4f} ({gain:+.4f})")
    assert gain > 0, f"the loop lowered the dominant answers' log-prob by {-gain:.4f} per token"
