"""The world model: the tiny Qwen2.5-VL (same architecture, building and loading code) with a
tokenizer learnt from the miniature world's texts, warmed up on the world's train split in two
stages until it counts right about half the time, with noise a majority vote can
remove.

1. Alignment (LLaVA's first stage in miniature): the vision tower and merger learn to put each
   cell's merged patch token on the language model's embedding of what the cell shows (its
   colour word, or "empty"); then they are frozen. Without it (version 1) the SFT taught the
   language model the answers' prior and nothing about the image: after 1,000 steps, showing it
   another image changed its loss by under 1e-3 nats, and its held-out pass@1 (0.20) was what
   guessing from the prior gives.
2. The project's SFT (ireasoner.policy.sft) of the language model on Proposer outputs
   (`<question>How many red or blue shapes are there?</question>`) and Solver traces (the count
   of each colour, then their sum). Every CHECK_EVERY steps the validation split is sampled;
   the weights kept are those of the check with the largest maj@5 - pass@1 among the checks
   whose pass@1 lies in VALIDATION_PASS_RANGE: the Solver's majority right more often than one
   sample is the room consensus training has. Training stops at the first check past that
   range.
3. Learning is abrupt: validation pass@1 sits near 0.3 for hundreds of steps, then jumps to
   about 0.6 within 20 steps, and where the jump lands depends on the CPU (the same seed jumped
   at step 750 on one machine, 900 on another: float reductions differ), so the check after it
   can land either side of the band's 0.60. When training stops past the range, the weights
   between the last two checks are also tried, (1 - a) * before + a * after for a in BLENDS
   (checkpoint averaging; CHECK_EVERY SFT steps apart the two lie in one basin), and they compete
   with the checks under the same rule. That puts the kept model inside the band by design,
   not by where a check happened to fall.

The held-out split's pass@1 and maj@5 are measured once, at the end, and recorded in world.json
next to the weights (never used to decide anything).

Name it in a config as `model.name_or_path: world`.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from ireasoner.config import ProposerConfig, SolverConfig, default_cache_dir
from ireasoner.data.world import (
    COLOURS,
    EMPTY,
    HELD_OUT_SIZE,
    WorldSample,
    cell_names,
    questions,
    world_samples,
)
from ireasoner.eval.sampled import SampledScore, mean_scores, score_samples
from ireasoner.model.tiny import build_tiny_model, ensure_built
from ireasoner.policy.sft import SFTExample, sft_train
from ireasoner.prompts import proposer_text, render, solver_text, suppressed_token_ids

WORLD_MODEL_VERSION = 3
WORLD_NAME = "world"
REPORT_FILE = "world.json"

WORLD_PROPOSER_PROMPT = "Ask one question about the coloured shapes inside <question> </question>."
WORLD_SOLVER_PROMPT = ("{question} Count step by step inside <think> </think>, then give the "
                       "number inside <answer> </answer>.")
# IVR-R1's layout (ireasoner.trainers.ivr_r1.rewards): the counts seen, their sum, the boxed number.
WORLD_IVR_PROMPT = ("{question} Describe the counts inside <desc> </desc>, add them inside "
                    "<think> </think>, then give the number as \\boxed{...}.")

# The band the held-out pass@1 must land in (issue 15), and how the warm-up's weights are chosen.
PASS_BAND = (0.25, 0.60)
# Validation pass@1 a kept model may have: inside the held-out band with room for the two
# splits' sampling noise (a kept check read 0.62 on validation and 0.59 held-out in one build,
# 0.61 and 0.64 in another).
VALIDATION_PASS_RANGE = (0.30, 0.55)
BLENDS = (0.25, 0.5, 0.75)
MIN_MAJORITY_GAIN = 0.05
TRAIN_IMAGES = 512
VALIDATION_IMAGES = 96
SAMPLES = 5
ALIGN_STEPS = 300
ALIGN_BATCH = 32
ALIGN_LR = 1e-3
WARMUP_LR = 2e-3
WARMUP_BATCH = 16
CHECK_EVERY = 50
FIRST_CHECK = 300  # nothing is learnt earlier (pass@1 stays at the prior's ~0.2)
MAX_STEPS = 1000
MAX_NEW_TOKENS = 48  # the longest trace is ~30 tokens
# The warm-up's result depends on torch's thread count (the order of float reductions): with one
# thread the same seed kept another step and other scores. Pinned, so that every build on the
# same kind of CPU gives the recorded model whatever OMP_NUM_THREADS says.
BUILD_THREADS = 2


@dataclass
class WorldReport:
    align_loss: float  # the alignment stage's last relative squared error
    steps: int  # the SFT step whose weights were kept (with blend < 1: the later of two)
    trained_steps: int
    stopped: str  # "best_validation_gain" or "no_eligible_check" (the last weights kept)
    validation_pass_at_1: float
    validation_maj_at_5: float
    held_out_pass_at_1: float
    held_out_maj_at_5: float
    held_out_agreement: float
    held_out_images: int
    seconds: float
    history: list[dict]  # every validation check: step, pass@1, maj@5 (blends: blend, from_step)
    # Kept weights = (1 - blend) * step blended_from + blend * step `steps`; 1.0: a check itself.
    blend: float = 1.0
    blended_from: int | None = None


def world_proposer_config() -> ProposerConfig:
    return ProposerConfig(prompt=WORLD_PROPOSER_PROMPT)


def world_solver_config() -> SolverConfig:
    return SolverConfig(prompt=WORLD_SOLVER_PROMPT)


def question_of(sample: WorldSample, index: int):
    """The i-th sample of a list asks the (i mod 6)-th colour pair: every question appears."""
    return sample.qa[index % len(sample.qa)]


def solver_response(item) -> str:
    return "<think>\n" + "\n".join(item.steps) + f"\n</think><answer>{item.answer}</answer>"


def ivr_response(item) -> str:
    seen = "; ".join(step.split(": ", 1)[1] for step in item.steps[:-1])
    return (f"<desc>{seen}</desc><think>{item.steps[-1].split(': ', 1)[1]}</think>"
            f"\\boxed{{{item.answer}}}")


def tokenizer_texts() -> list[str]:
    texts = [WORLD_PROPOSER_PROMPT, WORLD_SOLVER_PROMPT, WORLD_IVR_PROMPT,
             "You are a helpful assistant.", " ".join([*COLOURS, EMPTY]),
             "<think>\n", "\n</think><answer>", "</answer>", "<question>", "</question>"]
    for index, sample in enumerate(world_samples("train", 200)):
        item = question_of(sample, index)
        texts.extend([item.question, solver_response(item), ivr_response(item)])
    return texts


def warmup_examples(processor, samples: list[WorldSample], seed: int) -> list[SFTExample]:
    """One Solver trace per (image, question), one Proposer question and one IVR-R1-format
    trace (configs/world_ivr.yaml) per image."""
    solver_cfg = world_solver_config()
    ivr_cfg = SolverConfig(prompt=WORLD_IVR_PROMPT)
    proposer_prompt = render(processor, proposer_text(world_proposer_config()))
    rng = random.Random(seed)
    examples = []
    for sample in samples:
        for item in sample.qa:
            examples.append(SFTExample(sample.image, render(processor, solver_text(
                solver_cfg, item.question)), solver_response(item)))
        question = rng.choice(questions())
        examples.append(SFTExample(sample.image, proposer_prompt, f"<question>{question}</question>"))
        item = rng.choice(sample.qa)
        examples.append(SFTExample(sample.image, render(processor, solver_text(
            ivr_cfg, item.question)), ivr_response(item)))
    return examples


@torch.no_grad()
def sample_solver(model, processor, samples: list[WorldSample], k: int = SAMPLES, seed: int = 0,
                  max_new_tokens: int = MAX_NEW_TOKENS) -> list[SampledScore]:
    """k Solver samples (temperature 1) per image on its question (question_of), scored."""
    solver_cfg = world_solver_config()
    items = [question_of(s, i) for i, s in enumerate(samples)]
    prompts = [render(processor, solver_text(solver_cfg, item.question)) for item in items]
    inputs = processor(images=[s.image for s in samples for _ in range(k)],
                       text=[p for p in prompts for _ in range(k)], return_tensors="pt",
                       padding=True, padding_side="left")
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    output = model.generate(
        **inputs.to(model.device), do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
        max_new_tokens=max_new_tokens, suppress_tokens=suppressed_token_ids(processor),
    )
    model.train(was_training)
    texts = processor.batch_decode(output[:, inputs["input_ids"].shape[1]:],
                                   skip_special_tokens=True)
    return [score_samples(texts[i * k:(i + 1) * k], item.answer) for i, item in enumerate(items)]


def image_token_features(model, pixel_values: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """The merged patch tokens the language model receives, (images x cells, hidden): 84 px
    images give one token per 28 px cell, row-major."""
    output = model.model.get_image_features(pixel_values, grids)
    return torch.cat(list(output.pooler_output))


def align_vision(model, processor, samples: list[WorldSample], steps: int = ALIGN_STEPS,
                 seed: int = 0) -> float:
    """Train the vision tower and merger so each cell's token lands on the language model's
    (frozen, here) input embedding of what the cell shows, then freeze them; the relative
    squared error of the last step is returned. The embedding of a word split into several
    tokens is their mean."""
    embeddings = model.get_input_embeddings().weight.detach()
    names = [*COLOURS, EMPTY]
    targets = torch.stack([
        embeddings[processor.tokenizer(" " + name, add_special_tokens=False)["input_ids"]].mean(0)
        for name in names])
    # Preprocessed once: every image has the same size, hence the same number of patch rows.
    encoded = processor.image_processor(images=[s.image for s in samples], return_tensors="pt")
    patches = encoded["pixel_values"].view(len(samples), -1, encoded["pixel_values"].shape[-1])
    grids = encoded["image_grid_thw"]
    labels = torch.tensor([[names.index(n) for n in cell_names(s.cells)] for s in samples])
    vision = model.model.visual
    vision.requires_grad_(True)
    optimizer = torch.optim.AdamW(vision.parameters(), lr=ALIGN_LR)
    order = random.Random(seed)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        batch = order.sample(range(len(samples)), min(ALIGN_BATCH, len(samples)))
        features = image_token_features(model, patches[batch].flatten(0, 1), grids[batch])
        wanted = targets[labels[batch].flatten()]
        loss = ((features - wanted) ** 2).sum(-1).mean() / (wanted ** 2).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    vision.requires_grad_(False)
    return loss.item()


def warm_up_world(random_dir: Path, out_dir: Path, seed: int = 0,
                  pass_range: tuple[float, float] = VALIDATION_PASS_RANGE,
                  max_steps: int = MAX_STEPS, log=print) -> WorldReport:
    """Align the random checkpoint's vision tower, then SFT its language model on the world's
    train split, keeping the weights chosen on the validation split; save the model, its processor and
    world.json to `out_dir`."""
    started = time.perf_counter()
    processor = AutoProcessor.from_pretrained(random_dir)
    model = AutoModelForImageTextToText.from_pretrained(random_dir, dtype=torch.float32)
    train = world_samples("train", TRAIN_IMAGES, seed)
    model.requires_grad_(False)
    align_loss = align_vision(model, processor, train, seed=seed)
    log(f"world warm-up: vision aligned (relative error {align_loss:.3f})")
    model.model.language_model.requires_grad_(True)
    model.lm_head.requires_grad_(True)
    examples = warmup_examples(processor, train, seed)
    validation = world_samples("validation", VALIDATION_IMAGES, seed)
    history: list[dict] = []
    best: dict = {}  # the eligible candidate with the largest maj@5 - pass@1, and its weights
    checked: list[dict] = []  # the last two checks' weights: the jump lies between them

    def validate(state: dict[str, torch.Tensor], **at) -> dict:
        """Score the model, which holds `state` (a copy, kept if this candidate is the best)."""
        score = mean_scores(sample_solver(model, processor, validation, seed=seed))
        record = {**at, "pass_at_1": score.pass_at_1, "maj_at_5": score.majority_correct}
        history.append(record)
        if eligible(record, pass_range) and gain(record) > best.get("gain", -1.0):
            best.update(gain=gain(record), record=record, state=state)
        log(f"world warm-up {at}: validation pass@1 {score.pass_at_1:.3f} "
            f"maj@5 {score.majority_correct:.3f}")
        return record

    def check(step: int) -> bool:
        if step % CHECK_EVERY or step < FIRST_CHECK:
            return False
        state = weights(model)
        record = validate(state, step=step)
        checked[:] = [*checked[-1:], {"record": record, "state": state}]
        return record["pass_at_1"] > pass_range[1]

    stats = sft_train(model, processor, examples, steps=max_steps, lr=WARMUP_LR,
                      batch_size=WARMUP_BATCH, micro_batch_size=WARMUP_BATCH, seed=seed,
                      precision="float32", stop=check)
    if len(checked) == 2 and checked[-1]["record"]["pass_at_1"] > pass_range[1]:
        before, after = checked
        for blend in BLENDS:
            state = blended(before["state"], after["state"], blend)
            model.load_state_dict(state)
            validate(state, step=after["record"]["step"], blend=blend,
                     from_step=before["record"]["step"])
    if best:
        model.load_state_dict(best["state"])
        chosen, stopped = best["record"], "best_validation_gain"
    else:
        model.load_state_dict(checked[-1]["state"])
        chosen, stopped = checked[-1]["record"], "no_eligible_check"
    log(f"world warm-up: kept {chosen} of {stats.steps} steps ({stopped})")
    model.eval()
    held_out = mean_scores(sample_solver(model, processor,
                                         world_samples("held_out", HELD_OUT_SIZE, seed),
                                         seed=seed + 1))
    report = WorldReport(
        align_loss=align_loss, steps=chosen["step"], trained_steps=stats.steps, stopped=stopped,
        validation_pass_at_1=chosen["pass_at_1"], validation_maj_at_5=chosen["maj_at_5"],
        held_out_pass_at_1=held_out.pass_at_1, held_out_maj_at_5=held_out.majority_correct,
        held_out_agreement=held_out.agreement, held_out_images=HELD_OUT_SIZE,
        seconds=time.perf_counter() - started, history=history,
        blend=chosen.get("blend", 1.0), blended_from=chosen.get("from_step"),
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (Path(out_dir) / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2))
    return report


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def blended(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
            blend: float) -> dict[str, torch.Tensor]:
    return {k: torch.lerp(before[k], after[k], blend) if after[k].is_floating_point()
            else after[k] for k in after}


def gain(check: dict) -> float:
    return check["maj_at_5"] - check["pass_at_1"]


def eligible(check: dict, pass_range: tuple[float, float]) -> bool:
    # A mean of means is inexact: 0.25 may arrive as 0.2499999...
    low, high = pass_range
    return (low - 1e-9 <= check["pass_at_1"] <= high + 1e-9
            and gain(check) >= MIN_MAJORITY_GAIN - 1e-9)


def world_model_dir(seed: int, cache_dir: Path | None = None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"world-qwen2_5_vl-v{WORLD_MODEL_VERSION}-seed{seed}"


def ensure_world_model(seed: int = 0, cache_dir: Path | None = None) -> Path:
    """The cached world model, built on first use (a few minutes on 2 CPU cores)."""

    def build(staging: Path) -> None:
        random_dir = staging / "random"
        build_tiny_model(random_dir, seed, tokenizer_texts())
        threads = torch.get_num_threads()
        torch.set_num_threads(BUILD_THREADS)
        try:
            warm_up_world(random_dir, staging, seed)
        finally:
            torch.set_num_threads(threads)
        for path in sorted(random_dir.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        random_dir.rmdir()

    return ensure_built(world_model_dir(seed, cache_dir), build)


def read_report(model_dir: Path) -> WorldReport:
    return WorldReport(**json.loads((Path(model_dir) / REPORT_FILE).read_text()))


def check_report(report: WorldReport) -> None:
    """Raise ValueError unless the held-out pass@1 lies in PASS_BAND and maj@5 is above it:
    below the band there is no consensus worth learning from, above it little left to learn."""
    low, high = PASS_BAND
    if not low <= report.held_out_pass_at_1 <= high:
        raise ValueError(f"world model: held-out pass@1 {report.held_out_pass_at_1:.3f} is outside "
                         f"[{low}, {high}] (warm-up kept step {report.steps}, "
                         f"{report.stopped})")
    if report.held_out_maj_at_5 <= report.held_out_pass_at_1:
        raise ValueError(f"world model: held-out maj@5 {report.held_out_maj_at_5:.3f} is not above "
                         f"pass@1 {report.held_out_pass_at_1:.3f}")

