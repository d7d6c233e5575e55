"""The paper's diagnostic figures (Fig. 3, 5, 6, 7) as matplotlib Figures.

Built on `matplotlib.figure.Figure`, not pyplot: no global backend or figure state, so the
report is safe to write from a worker thread or a Prefect task. Nulls arrive as NaN and show
as gaps; an empty series shows "no data".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Per-iteration values at B = 1 are noisy; past this many points a moving average is drawn
# over the raw series, as in the paper's curves.
SMOOTH_ABOVE = 20


@dataclass(frozen=True)
class DepthProfile:
    """Fig. 7 data for one question: D_j per step position, S_ij per in-group rollout."""
    title: str
    disagreement: np.ndarray        # (J,) NaN where undefined
    loo_similarity: np.ndarray      # (|G|, J) NaN where undefined
    rollouts: list[int]             # rollout index of each row of loo_similarity


def dynamics_figure(summary: pl.DataFrame) -> Figure:
    """Fig. 3: proposer reward and answer entropy; |G|/N and mean step similarity."""
    fig, (top, bottom) = _two_panels("Fig. 3 - self-evolution dynamics")
    _plot(top, summary, {"proposer_reward": "proposer reward", "entropy": "answer entropy (nats)"})
    _plot(bottom, summary, {"group_fraction": "majority density |G|/N",
                            "mean_step_similarity": "mean step similarity"})
    bottom.set_xlabel("iteration")
    return fig


def rewards_figure(summary: pl.DataFrame) -> Figure:
    """Fig. 5: the Solver reward decomposition; dominant-group size and valid positions."""
    fig, (top, bottom) = _two_panels("Fig. 5 - reward decomposition")
    _plot(top, summary, {"r_sol": "r_sol", "r_ans": "r_ans", "r_step": "r_step"})
    _plot(bottom, summary, {"group_size": "dominant group size |G|",
                            "valid_positions": "valid step positions"})
    bottom.set_xlabel("iteration")
    return fig


def steps_figure(summary: pl.DataFrame) -> Figure:
    """Fig. 6: average number of extracted steps per rollout."""
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Fig. 6 - extracted steps per rollout")
    _plot(ax, summary, {"mean_steps": "mean steps per rollout"})
    ax.set_xlabel("iteration")
    return fig


def depth_figure(profile: DepthProfile | None) -> Figure:
    """Fig. 7: per-step disagreement D_j (bars) and the leave-one-out heatmap S_ij."""
    fig, (top, bottom) = _two_panels("Fig. 7 - step agreement by depth", sharex=False)
    if profile is None:
        _no_data(top, "no scored question")
        _no_data(bottom, "no scored question")
        return fig
    fig.suptitle(f"Fig. 7 - step agreement by depth\n{profile.title}")
    steps = np.arange(1, profile.disagreement.size + 1)
    top.bar(steps, profile.disagreement, color="tab:red")  # NaN (undefined): no bar
    top.set_ylabel("disagreement D_j")
    top.set_xticks(steps)
    if np.isfinite(profile.loo_similarity).any():
        image = bottom.imshow(np.ma.masked_invalid(profile.loo_similarity), aspect="auto",
                              cmap="viridis", extent=(0.5, steps[-1] + 0.5,
                                                      len(profile.rollouts) - 0.5, -0.5))
        fig.colorbar(image, ax=bottom, label="S_ij")
        bottom.set_yticks(range(len(profile.rollouts)), [str(i) for i in profile.rollouts])
        bottom.set_xticks(steps)
    else:
        _no_data(bottom, "no leave-one-out similarity defined")
    bottom.set_xlabel("step j")
    bottom.set_ylabel("in-group rollout i")
    return fig


def _two_panels(title: str, sharex: bool = True) -> tuple[Figure, tuple[Axes, Axes]]:
    fig = Figure(figsize=(8, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=sharex)
    fig.suptitle(title)
    return fig, (top, bottom)


def _plot(ax: Axes, summary: pl.DataFrame, columns: dict[str, str]) -> None:
    x = summary["iteration"].to_numpy()
    for column, label in columns.items():
        y = summary[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
        if not np.isfinite(y).any():
            continue
        if len(y) > SMOOTH_ABOVE:
            raw = ax.plot(x, y, alpha=0.25, linewidth=0.8)[0]
            ax.plot(x, moving_average(y, max(2, len(y) // 50)), color=raw.get_color(), label=label)
        else:
            ax.plot(x, y, marker="o", label=label)
    if not ax.lines:
        _no_data(ax, "no data")
        return
    ax.legend(loc="best", fontsize="small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last `window` finite values (NaN where the window has none)."""
    finite = np.isfinite(values)
    sums = np.cumsum(np.where(finite, values, 0.0))
    counts = np.cumsum(finite)
    sums[window:] = sums[window:] - sums[:-window]
    counts[window:] = counts[window:] - counts[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])
