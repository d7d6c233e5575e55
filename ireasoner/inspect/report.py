"""A run's diagnostics (paper Fig. 3, 5, 6, 7) as PNG files and one HTML page linking them."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import polars as pl

from ireasoner.inspect.figures import (
    DepthProfile,
    depth_figure,
    dynamics_figure,
    rewards_figure,
    steps_figure,
)
from ireasoner.inspect.queries import (
    NotInRun,
    iteration_summary,
    read_iterations,
    require_iteration,
    require_run,
    scan,
)
from ireasoner.pipeline.run import run_config
from storage import RunStore

FIGURES = {
    "fig3_dynamics.png": "Fig. 3: proposer reward and answer entropy (top); majority density "
                         "|G|/N and mean step similarity (bottom), per iteration.",
    "fig5_rewards.png": "Fig. 5: mean r_sol, r_ans, r_step (top); dominant-group size |G| and "
                        "valid step positions (bottom).",
    "fig6_steps.png": "Fig. 6: average number of extracted steps per rollout.",
    "fig7_depth.png": "Fig. 7: per-step disagreement D_j (top) and leave-one-out similarity "
                      "S_ij over in-group rollouts i and steps j (bottom), for one question.",
}
STYLE = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
         "text-align:left}img{max-width:100%}figure{margin:2em 0}")


def write_report(store: RunStore, out_dir: Path, *, iteration: int | None = None,
                 image_index: int | None = None) -> Path:
    """Write the four figures and `index.html` into `out_dir`; returns the page's path.

    Fig. 7 shows question `image_index` of `iteration`; by default the latest scored
    iteration and its question with the largest dominant group.
    """
    require_run(store)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = iteration_summary(store)
    figures = [dynamics_figure(summary), rewards_figure(summary), steps_figure(summary),
               depth_figure(depth_profile(store, iteration, image_index))]
    for name, figure in zip(FIGURES, figures, strict=True):
        figure.savefig(out_dir / name, dpi=100)
    page = out_dir / "index.html"
    page.write_text(_page(store, summary), encoding="utf-8")
    return page


def depth_profile(store: RunStore, iteration: int | None = None,
                  image_index: int | None = None) -> DepthProfile | None:
    """Fig. 7 data for one question, or None when no question has been scored."""
    if iteration is None:
        group = _latest_group(store)
        if group is None:
            return None
    else:
        require_iteration(store, "groups", iteration)
        group = _chosen_group(read_iterations(store, "groups", [iteration]), iteration,
                              image_index)
    iteration = group["iteration"]
    key = (pl.col("image_index") == group["image_index"])
    members = (read_iterations(store, "rewards", [iteration]).filter(key & pl.col("in_group"))
               ["rollout_index"].sort().to_list())
    steps = read_iterations(store, "steps", [iteration]).filter(
        key & pl.col("rollout_index").is_in(members))
    disagreement = np.array(group["disagreement"] or [], dtype=float)  # None -> NaN
    depth = max(disagreement.size, steps["step_index"].max() or 0, 1)
    loo = np.full((len(members), depth), np.nan)
    for row in steps.iter_rows(named=True):
        if row["loo_similarity"] is not None:
            loo[members.index(row["rollout_index"]), row["step_index"] - 1] = row["loo_similarity"]
    padded = np.full(depth, np.nan)
    padded[:disagreement.size] = disagreement
    title = f"iteration {iteration}, image {group['image_index']} ({group['image_id']})"
    return DepthProfile(title=title, disagreement=padded, loo_similarity=loo, rollouts=members)


def _latest_group(store: RunStore) -> dict | None:
    """The latest iteration's question with the largest dominant group; iterations whose
    questions were all skipped have an empty groups table and are passed over."""
    for iteration in reversed(store.table_iterations("groups")):
        groups = read_iterations(store, "groups", [iteration])
        if not groups.is_empty():
            return _chosen_group(groups, iteration, None)
    return None


def _chosen_group(groups: pl.DataFrame, iteration: int, image_index: int | None) -> dict:
    if image_index is not None:
        groups = groups.filter(pl.col("image_index") == image_index)
    if groups.is_empty():
        which = "" if image_index is None else f" for image index {image_index}"
        raise NotInRun(f"no scored question{which} in iteration {iteration}")
    return groups.sort(["group_fraction", "image_index"], descending=[True, False],
                       nulls_last=True).row(0, named=True)


def _page(store: RunStore, summary: pl.DataFrame) -> str:
    title = f"ireasoner run {store.location.rstrip('/').rsplit('/', 1)[-1]}"
    figures = "".join(f'<figure><img src="{name}" alt="{html.escape(caption)}">'
                      f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                      for name, caption in FIGURES.items())
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<h2>Run</h2>{_table(_manifest_rows(store, summary))}"
            f"<h2>Skipped inputs</h2>{_skips_table(store)}"
            f"<h2>Diagnostics</h2>{figures}</body></html>\n")


def _manifest_rows(store: RunStore, summary: pl.DataFrame) -> list[tuple[str, object]]:
    manifest, config = store.manifest(), run_config(store)
    return [
        ("run", store.location),
        ("config fingerprint", manifest.get("config_fingerprint")),
        ("code version", manifest.get("code_version")),
        ("schema version", manifest.get("schema_version")),
        ("created", manifest.get("created_at")),
        ("resumed", ", ".join(manifest.get("resumed_at", [])) or "never"),
        ("trainer", config.trainer.kind),
        ("model", config.model.name_or_path),
        ("rollouts per question (N)", config.solver.num_rollouts),
        ("iterations scored / completed / planned",
         f"{summary.height} / {store.completed_iterations()} / {config.schedule.iterations}"),
    ]


def _skips_table(store: RunStore) -> str:
    counts = (scan(store, "skips").group_by("stage", "reason").len()
              .sort("stage", "reason").collect())
    if counts.is_empty():
        return "<p>none</p>"
    return _table(counts.rows(), header=("stage", "reason", "count"))


def _table(rows: list[tuple], header: tuple[str, ...] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" \
        if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row)
                   + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"
