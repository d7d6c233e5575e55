"""Rollout throughput of both engines for one iteration of B images x N rollouts, and the
latency of swapping in a new LoRA adapter version.

    python benchmarks/rollouts.py                 # tiny model on CPU, B = 1 and 4, N = 5
    python benchmarks/rollouts.py --real-size     # GPU: Qwen2.5-VL-7B shapes, random weights
    python benchmarks/rollouts.py --skip-vllm --batches 1 4 8 --one-at-a-time 1 4 8

--one-at-a-time B... also times the transformers engine one request per generate call
(rollout.requests_per_call = 1) at those B, beside its default of all B requests in one call.

--real-size builds a 7B-shaped checkpoint with random weights (no download): vLLM serves it
with load_format="dummy", transformers instantiates it from the same config, and both run in
one process on the one GPU (vLLM takes rollout.gpu_memory_utilization of it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor  # noqa: E402

from ireasoner.config import LoraConfig, ModelConfig, RolloutConfig  # noqa: E402
from ireasoner.data.synthetic import generate_samples  # noqa: E402
from ireasoner.engines import (  # noqa: E402
    AdapterRef,
    GenerationRequest,
    RolloutEngine,
    SamplingSpec,
)
from ireasoner.engines.transformers_engine import TransformersEngine  # noqa: E402
from ireasoner.model.loading import Backbone, load_backbone  # noqa: E402
from ireasoner.model.real_size import real_size_checkpoint  # noqa: E402
from ireasoner.model.warmup import TINY_SOLVER  # noqa: E402
from ireasoner.policy.adapters import PROPOSER, SOLVER, attach_adapters, use_adapter  # noqa: E402
from ireasoner.prompts import solver_text  # noqa: E402

N_ROLLOUTS = 5
SWAP_RANK = 16
# Qwen2.5-VL-7B-Instruct's published shapes.
def requests_for(batch: int, seed: int) -> list[GenerationRequest]:
    samples = generate_samples(batch, seed=seed, size=(336, 336))
    return [
        GenerationRequest(s.image, solver_text(TINY_SOLVER, s.qa[0].question), seed + i)
        for i, s in enumerate(samples)
    ]


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def throughput(engine: RolloutEngine, batch: int, sampling: SamplingSpec,
               adapter: AdapterRef | None, repeats: int) -> dict[str, float]:
    requests = requests_for(batch, seed=0)
    engine.generate(requests, sampling, adapter)  # warm-up: first-call allocations, caches
    seconds, tokens = 0.0, 0
    for _ in range(repeats):
        elapsed, batches = timed(lambda: engine.generate(requests, sampling, adapter))
        seconds += elapsed
        tokens += sum(c.num_tokens for b in batches for c in b)
    rollouts = repeats * batch * sampling.n
    return {"rollouts_per_s": rollouts / seconds, "tokens_per_s": tokens / seconds,
            "seconds_per_iteration": seconds / repeats, "mean_tokens": tokens / rollouts}


def save_adapter(policy: PeftModel, out_dir: Path, seed: int) -> Path:
    """Fill the solver adapter with fresh random weights (a "new version") and save it."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if f".{SOLVER}." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    policy.save_pretrained(out_dir, selected_adapters=[SOLVER])
    return out_dir / SOLVER


def vllm_swap_latency(engine, policy: PeftModel, work: Path) -> float:
    """Seconds a new adapter version adds to a one-token call (load from disk + activation)."""
    one = SamplingSpec(n=1, temperature=1.0, top_p=1.0, max_new_tokens=1)
    request = requests_for(1, seed=1)
    path = save_adapter(policy, work / "swap", seed=1)
    engine.generate(request, one, AdapterRef(SOLVER, str(path), 1))
    same, _ = timed(lambda: engine.generate(request, one, AdapterRef(SOLVER, str(path), 1)))
    save_adapter(policy, work / "swap", seed=2)
    new, _ = timed(lambda: engine.generate(request, one, AdapterRef(SOLVER, str(path), 2)))
    return new - same


def transformers_swap_latency(policy: PeftModel) -> float:
    """In memory there is nothing to load: switching the active adapter is the whole cost."""
    elapsed, _ = timed(lambda: [use_adapter(policy, name) for name in (PROPOSER, SOLVER)] * 10)
    return elapsed / 20


def real_size_backbone(path: Path) -> Backbone:
    config = AutoConfig.from_pretrained(path)
    with torch.device("cuda"):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.requires_grad_(False).eval()
    processor = AutoProcessor.from_pretrained(path)
    return Backbone(model, processor, torch.device("cuda"), torch.bfloat16, str(path))


def one_at_a_time(policy: PeftModel, processor, sampling: SamplingSpec,
                  args: argparse.Namespace) -> dict[int, float]:
    """Tokens/s of the transformers engine with one request per generate call, at each B of
    --one-at-a-time. Its cost per request does not depend on B, so on a GPU timing B = 1
    stands for every B."""
    engine = TransformersEngine(policy, processor, kv_cache=args.kv_cache, requests_per_call=1)
    figures = {}
    for batch in args.one_at_a_time:
        figures[batch] = throughput(engine, batch, sampling, AdapterRef(SOLVER), args.repeats)
        report(f"transformers B={batch} one at a time", figures[batch])
    return {batch: values["tokens_per_s"] for batch, values in figures.items()}


def speedup(batch: int, tokens_per_s: float, alone: dict[int, float]) -> str:
    reference = batch if batch in alone else min(alone)
    return (f"  batched / one at a time (B={reference}): "
            f"{tokens_per_s / alone[reference]:.2f}x tokens/s")


def report(label: str, figures: dict[str, float]) -> None:
    cells = "  ".join(f"{key} {value:8.2f}" for key, value in figures.items())
    print(f"{label:<34} {cells}", flush=True)


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="rollout-bench-"))
    if args.real_size:
        if not torch.cuda.is_available():
            raise SystemExit("--real-size needs a CUDA GPU")
        backbone = real_size_backbone(real_size_checkpoint(work / "model"))
        load_format, rank = "dummy", SWAP_RANK
    else:
        backbone = load_backbone(ModelConfig(name_or_path="tiny", dtype="float32", device="cpu",
                                             min_pixels=56 * 56, max_pixels=112 * 112))
        load_format, rank = "auto", SWAP_RANK
    policy = attach_adapters(backbone.model, LoraConfig(rank=rank, alpha=2.0 * rank))
    adapter_dir = save_adapter(policy, work / "adapter", seed=0)
    sampling = SamplingSpec(N_ROLLOUTS, 1.0, 1.0, args.max_new_tokens)
    print(f"device {backbone.device}, N={N_ROLLOUTS}, max_new_tokens={args.max_new_tokens}, "
          f"repeats={args.repeats}, torch threads {torch.get_num_threads()}, "
          f"kv cache {args.kv_cache}", flush=True)

    alone = one_at_a_time(policy, backbone.processor, sampling, args)
    transformers = TransformersEngine(policy, backbone.processor, kv_cache=args.kv_cache)
    for batch in args.batches:
        figures = throughput(transformers, batch, sampling, AdapterRef(SOLVER), args.repeats)
        report(f"transformers B={batch}", figures)
        if alone:
            print(speedup(batch, figures["tokens_per_s"], alone), flush=True)
    print(f"transformers adapter switch: {transformers_swap_latency(policy) * 1e3:.2f} ms")

    if args.skip_vllm:
        return
    from ireasoner.engines.vllm_engine import VLLMEngine

    rollout = RolloutConfig(max_lora_rank=rank, max_model_len=args.max_model_len)
    started, engine = timed(lambda: VLLMEngine(backbone.path, backbone.processor, rollout,
                                               dtype="bfloat16" if args.real_size else "auto",
                                               load_format=load_format))
    print(f"vllm engine start: {started:.1f} s")
    adapter = AdapterRef(SOLVER, str(adapter_dir), version=0)
    for batch in args.batches:
        report(f"vllm B={batch}", throughput(engine, batch, sampling, adapter, args.repeats))
    print(f"vllm new rank-{rank} adapter version: "
          f"{vllm_swap_latency(engine, policy, work) * 1e3:.1f} ms")
    engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-size", action="store_true")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--one-at-a-time", type=int, nargs="+", default=[], metavar="B")
    parser.add_argument("--kv-cache", choices=["dynamic", "static"], default="dynamic")
    # On a CPU shared with other jobs, 2 threads can run several times slower than 1 (each op
    # waits for a descheduled thread): set it and report it.
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
