"""Speed and peak memory of one iteration's Solver update: N rollouts of (image, prompt,
response), the reference and policy forward passes, exact KL, backward and AdamW on the Solver
adapter, for each update mode (spec §4): per_rollout (N optimizer steps, the published update)
and batched (one step on the mean loss).

    python benchmarks/update.py                  # tiny model on CPU, both modes
    python benchmarks/update.py --modes batched  # one mode
    python benchmarks/update.py --real-size      # Qwen2.5-VL-7B shapes, random bf16 weights

--real-size builds the 7B shapes (the ones benchmarks/rollouts.py uses) with random weights
directly on the GPU (no download) and times 5 x 256 response tokens with one image. Without a
GPU it only builds the config and the model on the `meta` device, and says that nothing was
measured.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import Qwen2_5_VLForConditionalGeneration  # noqa: E402

from ireasoner.config import (  # noqa: E402
    KLConfig,
    LoraConfig,
    ModelConfig,
    OptimizationConfig,
)
from ireasoner.data.synthetic import generate_samples  # noqa: E402
from ireasoner.model.loading import load_backbone  # noqa: E402
from ireasoner.model.real_size import real_size_config  # noqa: E402
from ireasoner.model.tiny import build_processor, build_tokenizer  # noqa: E402
from ireasoner.model.warmup import TINY_SOLVER  # noqa: E402
from ireasoner.policy.adapters import SOLVER, attach_adapters  # noqa: E402
from ireasoner.policy.update import PolicyExample, RoleTrainer  # noqa: E402
from ireasoner.prompts import render, solver_text  # noqa: E402


def make_examples(processor, rollouts: int, response_tokens: int, image_side: int,
                  seed: int = 0) -> list[PolicyExample]:
    """One image and question, `rollouts` responses of exactly `response_tokens` random ordinary
    (non-special) token ids each."""
    sample = generate_samples(1, seed=seed, size=(image_side, image_side))[0]
    prompt = render(processor, solver_text(TINY_SOLVER, sample.qa[0].question))
    # A sampled <|image_pad|> would add an image placeholder the processor never expanded.
    special = set(processor.tokenizer.added_tokens_decoder)
    ordinary = torch.tensor([i for i in range(len(processor.tokenizer)) if i not in special])
    generator = torch.Generator().manual_seed(seed)
    return [
        PolicyExample(image=sample.image, prompt=prompt, reward=float(i % 2),
                      response=ordinary[torch.randint(0, len(ordinary), (response_tokens,),
                                                      generator=generator)].tolist())
        for i in range(rollouts)
    ]


def time_modes(model, processor, args: argparse.Namespace, label: str) -> None:
    """One trainer per update mode on the same model; seconds per iteration of each."""
    examples = make_examples(processor, args.rollouts, args.response_tokens, args.image_side)
    for mode in args.modes:
        trainer = RoleTrainer(model, processor, SOLVER,
                              OptimizationConfig(update=mode,
                                                 micro_batch_size=args.micro_batch_size),
                              KLConfig())
        report(f"{label}: update {mode}", time_updates(trainer, examples, args.repeats))


def time_updates(trainer: RoleTrainer, examples: list[PolicyExample], repeats: int) -> dict:
    trainer.update(examples)  # warm-up: allocator, kernels, optimizer state
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    cpu_started = time.process_time()
    stats = [trainer.update(examples) for _ in range(repeats)]
    cpu_seconds = (time.process_time() - cpu_started) / repeats
    seconds = statistics.median(s.seconds for s in stats)
    figures = {
        "seconds_per_iteration": seconds,
        "optimizer_steps": stats[0].num_steps,
        # All threads' CPU time: on a shared box, less sensitive to others' load than wall time.
        "cpu_seconds_per_update": cpu_seconds,
        "response_tokens_per_second": stats[0].num_tokens / seconds,
        "response_tokens": stats[0].num_tokens,
    }
    if torch.cuda.is_available():
        figures["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        figures["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return figures


def tiny(args: argparse.Namespace) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone = load_backbone(ModelConfig(name_or_path="tiny", device=device))
    model = attach_adapters(backbone.model, LoraConfig())
    time_modes(model, backbone.processor, args,
               f"tiny model on {device}, {args.rollouts} x {args.response_tokens} response "
               f"tokens, {args.image_side}px image")


def real_size(args: argparse.Namespace) -> None:
    # The tiny tokenizer and processor stand in for Qwen's: the same special tokens and image
    # processor (14 px patches, 2 x 2 merge), so inputs have the 7B run's shapes.
    processor = build_processor(build_tokenizer())
    config = real_size_config()
    if not torch.cuda.is_available():
        with torch.device("meta"):
            model = Qwen2_5_VLForConditionalGeneration(config)
        billions = sum(p.numel() for p in model.parameters()) / 1e9
        print(f"real-size config built: {billions:.2f} B parameters (on the meta device)")
        print("no CUDA device: GPU seconds per update and peak memory were NOT measured")
        return
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.requires_grad_(False)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = attach_adapters(model, LoraConfig())
    time_modes(model, processor, args,
               f"Qwen2.5-VL-7B shapes, random bf16 weights, {torch.cuda.get_device_name()}, "
               f"{args.rollouts} x {args.response_tokens} response tokens, {args.image_side}px "
               f"image, micro-batch {args.micro_batch_size}")


def report(label: str, figures: dict) -> None:
    print(label)
    for name, value in figures.items():
        print(f"  {name:28s} {value:,.3f}" if isinstance(value, float) else f"  {name:28s} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-size", action="store_true")
    parser.add_argument("--rollouts", type=int, default=5)
    parser.add_argument("--response-tokens", type=int, default=256,
                        help="per rollout (the Solver's max_new_tokens)")
    parser.add_argument("--modes", default="per_rollout,batched",
                        help="comma-separated update modes to time")
    parser.add_argument("--image-side", type=int, default=None,
                        help="pixels (default: 112 tiny, 448 real size)")
    parser.add_argument("--micro-batch-size", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = set(args.modes) - {"per_rollout", "batched"}
    if unknown or not args.modes:
        parser.error(f"--modes takes per_rollout and/or batched, got {args.modes}")
    if args.image_side is None:
        args.image_side = 448 if args.real_size else 112
    (real_size if args.real_size else tiny)(args)


if __name__ == "__main__":
    main()
