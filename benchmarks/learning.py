"""Does the loop learn? iReasoner on the miniature world (configs/world.yaml) from the one cached
warm-up checkpoint (model `world`), in three conditions with the same iterations and seeds:

    full         the full reward (answer consensus + step-level agreement)
    answer_only  the answer-only ablation (configs/ablations/answer_only.yaml, lambda = 0)
    lr0          a control with optimization.lr = 0 (samples, rewards, steps; moves nothing)

For every run: held-out pass@1 / maj@5 / agreement before and after, through the project's
evaluation path (lmms-eval on the local task `ireasoner_world`, 128 held-out images x 5
samples at temperature 1, the same lmms-eval seed before and after), and per iteration the
answer agreement |G|/N, the share of rollouts with r_step > 0, mean r_step, the Solver's KL and
beta, read back from the run's metrics and rewards tables.

    python benchmarks/learning.py --out runs/learning [--seeds 0 1 2] [--iterations 20]
        [--set optimization.lr=1e-4 ...] [--split validation]

Settings (lr, iterations, ...) are chosen with --split validation: the same runs scored on 128
validation images by the world model's own sampler, the held-out split untouched.

Writes <out>/summary.parquet (one row per run), <out>/curves.parquet (one row per run and
iteration) and <out>/learning.png (mean and spread over seeds) when matplotlib is installed.
Nothing here looks at the held-out set except the final scores; the world model's early
stopping used the validation split (ireasoner.model.world).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# lmms-eval runs in a subprocess that imports the task hooks (ireasoner.eval.tasks.*): from this
# checkout, not from whichever copy of the package happens to be installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from ireasoner.config import load_config  # noqa: E402
from ireasoner.eval.scheduled import BASE_LABEL  # noqa: E402
from ireasoner.eval.world_task import WORLD_TASK  # noqa: E402
from ireasoner.inspect.queries import read_iterations  # noqa: E402
from ireasoner.pipeline.evaluate import evaluate_label  # noqa: E402
from ireasoner.pipeline.run import run_config  # noqa: E402
from storage import RunStore  # noqa: E402

CONFIG = str(ROOT / "configs" / "world.yaml")
CONDITIONS: dict[str, tuple[list[str], list[str]]] = {  # name: (config overlays, overrides)
    "full": ([], []),
    "answer_only": ([str(ROOT / "configs" / "ablations" / "answer_only.yaml")], []),
    "lr0": ([], ["optimization.lr=0"]),
}
SCORES = ("pass_at_1", "maj_at_5", "agreement")
VALIDATION_IMAGES = 128  # as many as the held-out task has
CURVES = ("group_fraction", "r_step_positive", "r_step", "kl", "beta")


def train_run(run_dir: Path, condition: str, seed: int, iterations: int,
              settings: Sequence[str] = ()) -> RunStore:
    from flows.train import train

    overlays, overrides = CONDITIONS[condition]
    overrides = [*settings, *overrides]  # the condition's own (lr = 0) wins
    store = RunStore(str(run_dir))
    # A fresh run each time (the benchmark measures whole runs); an earlier one is moved aside
    # to <run>.replaced-<time>, as `ireasoner train --overwrite` does, never deleted.
    store.move_aside()
    train(config=[CONFIG, *overlays],
          overrides=[*overrides, f"trainer.seed={seed}", f"schedule.iterations={iterations}",
                     f"storage.run_dir={run_dir}"], resume=False)
    return store


def scores(store: RunStore, label: str, split: str) -> dict[str, float]:
    return held_out_scores(store, label) if split == "held_out" else validation_scores(store, label)


def held_out_scores(store: RunStore, label: str) -> dict[str, float]:
    """pass@1, maj@5 and agreement of one checkpoint (or the base) on the held-out task."""
    evaluate_label(store, run_config(store), label, [WORLD_TASK])
    results = pl.read_parquet(store.root / "eval" / label / "results.parquet")
    failed = results.filter(pl.col("status") != "ok")
    if failed.height:
        raise RuntimeError(f"evaluation of {label} failed: {failed['error'].to_list()}")
    # Metric names carry the task's filter: "pass_at_1,samples".
    values = {metric.split(",")[0]: value for metric, value in
              zip(results["metric"].to_list(), results["value"].to_list(), strict=True)}
    return {name: values[name] for name in SCORES}


def validation_scores(store: RunStore, label: str) -> dict[str, float]:
    """The same scores on VALIDATION_IMAGES validation images, by the world model's own sampler (what its
    warm-up checks): choices such as the lr are made here, so the held-out split is read only
    for the figures reported."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ireasoner.data.world import world_samples
    from ireasoner.eval.sampled import mean_scores
    from ireasoner.eval.scheduled import run_checkpoints
    from ireasoner.model.world import sample_solver

    run = run_checkpoints(store.root)
    target = {t.label: t for t in run.targets}[label]
    model = AutoModelForImageTextToText.from_pretrained(run.base_model, dtype=torch.float32)
    if target.adapter_dir is not None:
        model = PeftModel.from_pretrained(model, target.adapter_dir).merge_and_unload()
    processor = AutoProcessor.from_pretrained(run.base_model)
    score = mean_scores(sample_solver(model, processor, world_samples("validation", VALIDATION_IMAGES)))
    return {"pass_at_1": score.pass_at_1, "maj_at_5": score.majority_correct,
            "agreement": score.agreement}


def curves(store: RunStore, condition: str, seed: int) -> pl.DataFrame:
    iterations = list(range(1, store.completed_iterations() + 1))
    metrics = read_iterations(store, "metrics", iterations).select(
        "iteration", "group_fraction", "r_step", pl.col("solver_kl").alias("kl"),
        pl.col("solver_beta").alias("beta"))
    positive = (read_iterations(store, "rewards", iterations)
                .group_by("iteration")
                .agg((pl.col("r_step").fill_null(0.0) > 0).mean().alias("r_step_positive")))
    return (metrics.join(positive, on="iteration", how="left")
            .with_columns(pl.lit(condition).alias("condition"), pl.lit(seed).alias("seed"))
            .sort("iteration"))


def plot(curve_table: pl.DataFrame, out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG (the curves are in curves.parquet)")
        return None
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for name, ax in zip(CURVES, axes, strict=True):
        for condition in CONDITIONS:
            stats = (curve_table.filter(pl.col("condition") == condition)
                     .group_by("iteration").agg(pl.col(name).mean().alias("mean"),
                                                pl.col(name).std().fill_null(0).alias("std"))
                     .sort("iteration"))
            if stats.is_empty():
                continue
            x, mean, std = (stats[c].to_numpy() for c in ("iteration", "mean", "std"))
            ax.plot(x, mean, label=condition)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        ax.set_title(name)
        ax.set_xlabel("iteration")
    axes[0].legend()
    fig.tight_layout()
    path = out / "learning.png"
    fig.savefig(path, dpi=100)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/learning")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=None,
                        help="default: configs/world.yaml's schedule.iterations")
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS),
                        choices=list(CONDITIONS))
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run, e.g. optimization.lr=1e-4")
    parser.add_argument("--split", choices=["held_out", "validation"], default="held_out",
                        help="validation: score on the validation split (for choosing settings)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    iterations = args.iterations or load_config(CONFIG).schedule.iterations
    started = time.perf_counter()
    rows, curve_frames, before = [], [], None
    for seed in args.seeds:
        for condition in args.conditions:
            t0 = time.perf_counter()
            store = train_run(out / f"{condition}-seed{seed}", condition, seed, iterations,
                              args.settings)
            trained = time.perf_counter() - t0
            if before is None:  # one warm-up checkpoint: its scores are measured once
                before = scores(store, BASE_LABEL, args.split)
            after = scores(store, store.checkpoints()[-1][1].name, args.split)
            rows.append({"condition": condition, "seed": seed, "iterations": iterations,
                         "split": args.split, "settings": " ".join(args.settings),
                         **{f"before_{k}": v for k, v in before.items()},
                         **{f"after_{k}": v for k, v in after.items()},
                         "train_seconds": trained, "seconds": time.perf_counter() - t0})
            curve_frames.append(curves(store, condition, seed))
            print(f"{condition:<12} seed {seed}: pass@1 {before['pass_at_1']:.3f} -> "
                  f"{after['pass_at_1']:.3f}, maj@5 {before['maj_at_5']:.3f} -> "
                  f"{after['maj_at_5']:.3f}, agreement {before['agreement']:.3f} -> "
                  f"{after['agreement']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
            # Written after every run: an interrupted benchmark keeps what it finished.
            pl.DataFrame(rows).write_parquet(out / "summary.parquet")
            pl.concat(curve_frames, how="diagonal_relaxed").write_parquet(out / "curves.parquet")
    summary = pl.DataFrame(rows)
    curve_table = pl.concat(curve_frames, how="diagonal_relaxed")
    plot(curve_table, out)
    print(report(summary, curve_table))
    print(f"whole benchmark: {time.perf_counter() - started:.0f} s; outputs in {out}")
    return 0


def report(summary: pl.DataFrame, curve_table: pl.DataFrame) -> str:
    """Mean over seeds of the change in each score, and agreement early vs late in the run."""
    lines = ["condition     seeds  d pass@1 (pts)  d maj@5 (pts)  d agreement  |G|/N first3 -> last3"]
    for condition in CONDITIONS:
        runs = summary.filter(pl.col("condition") == condition)
        if runs.is_empty():
            continue
        delta = {k: 100 * (runs[f"after_{k}"] - runs[f"before_{k}"]) for k in SCORES}
        c = curve_table.filter(pl.col("condition") == condition)
        last = c["iteration"].max()
        early = c.filter(pl.col("iteration") <= 3)["group_fraction"].mean()
        late = c.filter(pl.col("iteration") > last - 3)["group_fraction"].mean()
        lines.append(
            f"{condition:<12} {runs.height:>5}  {delta['pass_at_1'].mean():+6.1f} "
            f"(sd {delta['pass_at_1'].std() or 0:.1f})  {delta['maj_at_5'].mean():+6.1f}        "
            f"{delta['agreement'].mean() / 100:+.3f}       {early:.3f} -> {late:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
