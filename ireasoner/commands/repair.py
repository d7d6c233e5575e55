"""`ireasoner repair RUN`: find the damaged files of a run (full check: sizes, sha256 and
structure, storage.integrity), move them aside with everything that must be redone after them,
so that `ireasoner train --resume` redoes it.

Where the redo starts: at the earliest damaged file's stage. A resumed run redoes a stage only
if its marker is gone, and restarts from the checkpoint of the last completed iteration, so:

- every later stage of that iteration and every later iteration goes too: each one starts from
  the policy state (weights, optimizer, baselines, RNG) that the redone stage changes;
- a trainer stage of iteration i needs checkpoint i-1 intact, an evaluation of i checkpoint i;
  when it was pruned (storage.keep_checkpoints_every) or is damaged, the redo starts at the
  first stage after the latest intact checkpoint (down to `prepare`, which writes checkpoint 0);
- a compacted chunk holding iterations both kept and redone would shadow the redone files:
  the redo starts at the chunk's first iteration instead.

Nothing is deleted: the files go to `<run>/damaged/<time>/` (storage.RunStore.set_aside) with
REPAIR.json saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage import Damage, RunStore
from storage.remote import UnsupportedURL

PREPARE, EVALUATE = "prepare", "evaluate"  # the pipeline's own stages (pipeline.trainer)


@dataclass(frozen=True)
class RepairPlan:
    damage: list[Damage]
    redo: tuple[int, str]     # (iteration, stage) the resumed run starts redoing at
    why: list[str]            # why the redo starts earlier than the first damaged stage
    markers: list[tuple[int, str]]
    paths: list[str]          # files and checkpoint directories moved aside, relative


class _Order:
    """Stages in the order a run completes them: prepare, then per iteration the trainer's
    stages and evaluation."""

    def __init__(self, stages: list[str]):
        self.stages = stages

    def position(self, iteration: int, stage: str | None) -> tuple[int, int]:
        if iteration == 0:
            return (0, -1)
        if stage == EVALUATE:
            return (iteration, len(self.stages))
        return (iteration, self.stages.index(stage) if stage in self.stages else 0)

    def name(self, position: tuple[int, int]) -> tuple[int, str]:
        iteration, index = position
        if index < 0:
            return (0, PREPARE)
        return (iteration, EVALUATE if index == len(self.stages) else self.stages[index])

    def checkpoint_writer(self, iteration: int) -> tuple[int, int]:
        return (0, -1) if iteration == 0 else (iteration, len(self.stages) - 1)


def plan_repair(store: RunStore) -> RepairPlan | None:
    """What repair would move aside (None: nothing is damaged)."""
    damage = store.verify(full=True)
    if not damage:
        return None
    order = _Order(store.stages())
    redo = min(order.position(d.iteration, d.stage) for d in damage)
    broken = {_checkpoint_of(d.path) for d in damage} - {None}
    intact = {n for n, _ in store.checkpoints() if n not in broken}
    chunks = [(first, last, chunk.relative_to(store.root).as_posix())
              for name in store.tables() for first, last, chunk in store.table_folder(name).chunks]
    why: list[str] = []
    while redo != (0, -1):
        iteration, index = redo
        needs = iteration if index == len(order.stages) else iteration - 1
        if needs not in intact:
            earlier = max((n for n in intact if n < needs), default=None)
            redo = (earlier + 1, 0) if earlier is not None else (0, -1)
            why.append(f"checkpoint iter-{needs:06d}, which {order.name((iteration, index))[1]!r} "
                       f"of iteration {iteration} starts from, is "
                       f"{'damaged' if needs in broken else 'not kept'}")
            continue
        first_redone = iteration + 1 if index == len(order.stages) else iteration
        straddling = [(first, rel) for first, last, rel in chunks if last >= first_redone
                      and (first < first_redone or (first == iteration and index > 0))]
        if not straddling:
            break
        first, rel = min(straddling)
        redo = (first, 0)
        why.append(f"{rel} holds iterations from {first} on, compacted in one file")

    markers = [(it, stage) for it, stage in store.markers()
               if order.position(it, stage) >= redo]
    paths = {d.path.as_posix() for d in damage}
    for it, stage in markers:
        paths.add(f"stages/{it:06d}/{stage}.json")
        paths |= {rel for rel in store.stage_files(it, stage) if not rel.startswith("checkpoints/")}
    paths |= {f"checkpoints/{path.name}" for n, path in _checkpoint_dirs(store)
              if order.checkpoint_writer(n) >= redo}
    first_redone = redo[0] + 1 if redo[1] == len(order.stages) else redo[0]
    whole = redo[1] <= 0  # the iteration is redone from its first stage (or from prepare)
    for name in store.tables():
        folder = store.table_folder(name)
        paths |= {rel for first, _, rel in chunks if first >= first_redone
                  and rel.startswith(f"{name}/")}
        paths |= {path.relative_to(store.root).as_posix() for it, path in folder.loose.items()
                  if it > first_redone or (it == first_redone and whole)}
    paths = {rel for rel in paths if (store.root / rel).exists()}
    # A damaged file inside a checkpoint that goes as a whole goes with it.
    moved_dirs = {rel for rel in paths if rel.count("/") == 1 and rel.startswith("checkpoints/")}
    paths = {rel for rel in paths if not any(rel.startswith(f"{d}/") for d in moved_dirs)}
    return RepairPlan(damage, order.name(redo), why, markers, sorted(paths))


def repair_command(run: str, *, dry_run: bool = False, lease_seconds: float = 60.0) -> str:
    store = RunStore(run)
    if store.remote is not None:
        raise UnsupportedURL(f"{run} is a URL: repair works on a local run (copy it here, repair, "
                         "and train --resume from the copy)")
    if not store.exists():
        raise FileNotFoundError(f"{run} is not a run directory (no manifest.json)")
    with store.lock(lease_seconds):  # not while a training writes to it
        plan = plan_repair(store)
        if plan is None:
            return f"{store.location}: no damaged file found (sizes, sha256 and structure checked)"
        lines = [f"{store.location}: {len(plan.damage)} damaged file(s):"]
        lines += [f"  iteration {d.iteration} stage {d.stage or '?'!r}: {d.path.as_posix()} "
                  f"{d.problem}" for d in plan.damage]
        iteration, stage = plan.redo
        lines.append(f"redo from iteration {iteration} stage {stage!r}"
                     + "".join(f"\n  (earlier than the damage: {why})" for why in plan.why))
        if dry_run:
            lines.append(f"--dry-run: nothing moved; repair would move aside "
                         f"{len(plan.paths)} files or checkpoints and {len(plan.markers)} "
                         "stage markers:")
            lines += [f"  {rel}" for rel in plan.paths]
            return "\n".join(lines)
        record = {"damage": [{"path": d.path.as_posix(), "problem": d.problem,
                              "iteration": d.iteration, "stage": d.stage} for d in plan.damage],
                  "redo": {"iteration": iteration, "stage": stage}, "why": plan.why,
                  "moved": plan.paths}
        folder = store.set_aside(plan.paths, record)
    lines.append(f"moved {len(plan.paths)} files or checkpoints ({len(plan.damage)} damaged, "
                 f"the rest to be redone; {len(plan.markers)} stage markers among them) to "
                 f"{folder} (nothing deleted; REPAIR.json there says why)")
    lines.append(f"continue with: ireasoner train --run-dir {store.location} --resume")
    return "\n".join(lines)


def _checkpoint_of(path: Path) -> int | None:
    parts = path.parts
    if len(parts) > 2 and parts[0] == "checkpoints" and parts[1].startswith("iter-"):
        return int(parts[1].removeprefix("iter-"))
    return None


def _checkpoint_dirs(store: RunStore) -> list[tuple[int, Path]]:
    """Every checkpoint directory, complete or not."""
    folder = store.root / "checkpoints"
    return [(int(path.name.removeprefix("iter-")), path)
            for path in sorted(folder.glob("iter-*"))] if folder.is_dir() else []
