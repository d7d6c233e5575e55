"""Format warm-up of the tiny model: a random model emits noise that no rollout parser accepts,
so before it can stand in for a pretrained backbone it is fine-tuned (all weights, on CPU, about
a minute) on synthetic Proposer outputs (<question>…</question>) and Solver outputs
(<think>\\nStep 1: …\\n</think><answer>…</answer>) written from the synthetic images' facts."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from ireasoner.config import ProposerConfig, SolverConfig
from ireasoner.data.synthetic import SyntheticQA, SyntheticSample, generate_samples
from ireasoner.parsing import parse_trace
from ireasoner.policy.sft import SFTExample, sft_train
from ireasoner.prompts import proposer_text, render, solver_text, suppressed_token_ids

# The prompts the tiny model was warmed up on (the project's defaults before issue 14), frozen:
# the tiny model answers in format under these, not under today's defaults. configs/smoke.yaml
# and the tests that sample from the tiny model set them.
TINY_SOLVER_PROMPT = (
    "{question}\n\n"
    "Reason about the image step by step. Write your reasoning inside <think> </think> as "
    "numbered steps, one per line (Step 1: ..., Step 2: ...), then give only the final answer "
    "inside <answer> </answer>."
)
TINY_PROPOSER_PROMPT = (
    "Look at the image and ask one challenging question that can be answered from what the "
    "image shows, with a single short answer (a number, a word or an option letter). "
    "Write only the question, inside <question> </question>."
)
TINY_SOLVER = SolverConfig(prompt=TINY_SOLVER_PROMPT)
TINY_PROPOSER = ProposerConfig(prompt=TINY_PROPOSER_PROMPT)

WARMUP_IMAGE_SIZE = (84, 84)  # 9 image tokens: long enough to matter, short enough for CPU
WARMUP_IMAGES = 96
WARMUP_STEPS = 240
WARMUP_LR = 3e-3
WARMUP_BATCH = 16
REPORT_FILE = "warmup.json"

_NUMBERED_STEP = re.compile(r"^\s*Step 1:", re.MULTILINE)


@dataclass
class WarmupReport:
    steps: int
    first_loss: float
    final_loss: float
    solver_parse_rate: float  # sampled at temperature 1.0 on held-out images
    seconds: float


def solver_response(item: SyntheticQA) -> str:
    return "<think>\n" + "\n".join(item.steps) + f"\n</think><answer>{item.answer}</answer>"


def proposer_response(item: SyntheticQA) -> str:
    return f"<question>{item.question}</question>"


def warmup_examples(processor, samples: list[SyntheticSample]) -> list[SFTExample]:
    """One Solver example per question and one Proposer example per image."""
    solver_cfg, proposer_cfg = TINY_SOLVER, TINY_PROPOSER
    proposer_prompt = render(processor, proposer_text(proposer_cfg))
    examples = []
    for sample in samples:
        for item in sample.qa:
            prompt = render(processor, solver_text(solver_cfg, item.question))
            examples.append(SFTExample(sample.image, prompt, solver_response(item)))
        examples.append(SFTExample(sample.image, proposer_prompt, proposer_response(sample.qa[0])))
    return examples


def follows_solver_format(text: str) -> bool:
    """A closed, non-empty <answer> after a <think> of numbered steps ("Step 1: ...")."""
    trace = parse_trace(text, max_steps=8)
    return trace.status == "ok" and _NUMBERED_STEP.search(trace.think) is not None


@torch.no_grad()
def solver_parse_rate(model, processor, samples: list[SyntheticSample], seed: int = 0,
                      max_new_tokens: int = 160) -> float:
    """Fraction of Solver samples (temperature 1.0, one per image, generated as one
    left-padded batch) with numbered steps and a closed answer. The longest warm-up targets
    run to ~130 tokens, so a smaller `max_new_tokens` truncates formatted traces."""
    solver_cfg = TINY_SOLVER
    prompts = [render(processor, solver_text(solver_cfg, s.qa[0].question)) for s in samples]
    inputs = processor(images=[s.image for s in samples], text=prompts, return_tensors="pt",
                       padding=True, padding_side="left")
    torch.manual_seed(seed)
    output = model.generate(
        **inputs.to(model.device), do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
        max_new_tokens=max_new_tokens, suppress_tokens=suppressed_token_ids(processor),
    )
    texts = processor.batch_decode(output[:, inputs["input_ids"].shape[1]:],
                                   skip_special_tokens=True)
    return sum(follows_solver_format(text) for text in texts) / len(texts)


def warm_up_checkpoint(random_dir: Path, out_dir: Path, seed: int = 0) -> WarmupReport:
    """Fine-tune the random checkpoint in `random_dir` on the formats and save it to `out_dir`
    (weights, processor and a warmup.json report)."""
    started = time.perf_counter()
    processor = AutoProcessor.from_pretrained(random_dir)
    model = AutoModelForImageTextToText.from_pretrained(random_dir, dtype=torch.float32)
    model.requires_grad_(True)
    samples = generate_samples(WARMUP_IMAGES, seed=seed, size=WARMUP_IMAGE_SIZE)
    stats = sft_train(
        model, processor, warmup_examples(processor, samples), steps=WARMUP_STEPS, lr=WARMUP_LR,
        batch_size=WARMUP_BATCH, micro_batch_size=WARMUP_BATCH, seed=seed, precision="float32",
    )
    model.eval()
    held_out = generate_samples(16, seed=seed + 1_000_003, size=WARMUP_IMAGE_SIZE)
    report = WarmupReport(
        steps=stats.steps,
        first_loss=stats.losses[0],
        final_loss=stats.losses[-1],
        solver_parse_rate=solver_parse_rate(model, processor, held_out, seed=seed),
        seconds=time.perf_counter() - started,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (Path(out_dir) / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2))
    return report
