"""What the console shows while a run trains or a command works.

On a terminal: a progress bar (rich). Otherwise (a file, a pipe, a Prefect worker): one line per
iteration, or per few items, on the `ireasoner.progress` logger. The Prefect UI receives the
lines either way (marked `console=False` when the bar shows them). Both stay silent when that
logger is off (`ireasoner -q`: warnings only).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

log = logging.getLogger("ireasoner.progress")

# (label, metrics column): the figures of an iteration worth watching, read by name (a trainer
# fills some of them: IVR-R1 has no r_sol or |G|/N, but its reward and accuracy).
SHOWN = (
    ("r_sol", "r_sol"),
    ("|G|/N", "group_fraction"),
    ("r_step", "r_step"),
    ("reward", "ivr_reward"),
    ("acc", "r_acc"),
    ("KL", "solver_kl"),
    ("β", "solver_beta"),
)

T = TypeVar("T")


def enabled() -> bool:
    return log.isEnabledFor(logging.INFO)


def interactive() -> bool:
    return sys.stdout.isatty()


def figures(row: dict[str, Any] | None) -> str:
    """`r_sol 0.412  |G|/N 0.667 ...`: the SHOWN columns the row has, with a value."""
    row = row or {}
    parts = []
    for label, column in SHOWN:
        value = row.get(column)
        if isinstance(value, int | float) and math.isfinite(value):
            parts.append(f"{label} {_number(value)}")
    return "  ".join(parts)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def summary_line(iteration: int, total: int, row: dict[str, Any] | None,
                 seconds_per_iteration: float | None) -> str:
    """`iteration 3/8  r_sol 0.412 ...  12.3 s/it  1:02 left`."""
    line = f"iteration {iteration}/{total}"
    shown = figures(row)
    if shown:
        line += f"  {shown}"
    if seconds_per_iteration is not None:
        line += (f"  {seconds_per_iteration:.1f} s/it  "
                 f"{duration(seconds_per_iteration * (total - iteration))} left")
    return line


class IterationProgress:
    """Progress over a run's iterations `first..total`: `advance(iteration, metrics_row)` after
    each. Seconds per iteration are this process's mean (a resumed run's speed, not the
    stopped one's)."""

    def __init__(self, first: int, total: int, *, bar: bool | None = None) -> None:
        self.first, self.total = first, total
        self.started = time.monotonic()
        self.done_here = 0
        self.on = enabled()
        self.bar = None
        if self.on and (interactive() if bar is None else bar) and first <= total:
            self.bar = _Bar("train", total, completed=first - 1)

    def advance(self, iteration: int, row: dict[str, Any] | None) -> str:
        self.done_here += 1
        per_iteration = (time.monotonic() - self.started) / self.done_here
        line = summary_line(iteration, self.total, row, per_iteration)
        if self.bar is not None:
            self.bar.update(iteration, f"{figures(row)}  {per_iteration:.1f} s/it")
            # The bar shows it on the terminal; the line still goes to the run's logs (the
            # Prefect UI). The console's filter (flows.console) drops records marked so.
            log.info(line, extra={"console": False})
        elif self.on:
            log.info(line)
        return line

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def steps(items: Iterable[T], total: int, label: str, *, lines: int = 20) -> Iterator[T]:
    """Yield `items`, showing how far along they are: a bar on a terminal, else a log line at
    most `lines` times (and at the last item)."""
    if not enabled() or total <= 0:
        yield from items
        return
    if interactive():
        bar = _Bar(label, total)
        try:
            for done, item in enumerate(items, start=1):
                yield item
                bar.update(done)
        finally:
            bar.close()
        return
    every = max(1, math.ceil(total / lines))
    started = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        if done % every == 0 or done == total:
            log.info("%s: %d/%d (%.1f s)", label, done, total, time.monotonic() - started)


class _Bar:
    """A rich progress bar on stdout: label, bar, n/total, elapsed, time left, figures."""

    def __init__(self, label: str, total: int, completed: int = 0) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        # A short bar: the figures need the width (an 80-column terminal fits them).
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=16),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), TextColumn("{task.fields[figures]}"),
                                 refresh_per_second=2)
        self.task = self.progress.add_task(label, total=total, completed=completed, figures="")
        self.progress.start()

    def update(self, completed: int, figures: str | None = None) -> None:
        fields = {} if figures is None else {"figures": figures}
        self.progress.update(self.task, completed=completed, **fields)

    def close(self) -> None:
        self.progress.stop()


def _number(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return f"{value:.2e}"
