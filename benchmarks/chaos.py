"""kill -9 at random moments, then --resume: does every interrupted run end identical to an
uninterrupted one?

Trains a reference run of the tiny model (4 iterations; compaction every 2; in-loop evaluation
at iterations 2 and 4; checkpoints kept every 2), then one run per moment below, killed there
(SIGKILL to its whole process group: the trainer and its embedded Prefect server) and resumed to
the end. A moment is a marker file's appearance plus a random delay (0-1.5 s, seeded), so the
kills land inside start-up, every stage, the checkpoint writes of the update stage, evaluation,
publishing and compaction. Each run's tables (wall-time columns aside), the files holding them
(chunks, nothing shadowed or temporary left) and final adapters must equal the reference's. Prints what was in progress at each kill (read from disk once the
process group is dead) and the verdict; exits 1 if any run differs.

Compaction (iterations 1-2 after iteration 2's evaluation, 3-4 after iteration 4's) lasts a
fraction of a second, which a marker plus a delay missed; its moments are aimed by watching for
its first chunk (or the chunk's temporary) and killing within milliseconds, and at exact file
operations (the chunk's rename, the removal of the per-iteration files it holds) through
tests/fixtures/killat.c, an LD_PRELOAD shim that sends SIGKILL to the process group there.

    python benchmarks/chaos.py [--seed 0] [--moments run,compaction]

With --enospc, the disk fills instead: each run writes through tests/fixtures/enospc.c (an
LD_PRELOAD shim failing write(2) with ENOSPC after k bytes to matching paths) aimed at one write
(a table of each stage, a checkpoint mid-tensor, a stage marker, a compaction chunk); it must
fail with the one-line DiskFull error, leave no temporary and no file under the aimed name, and
`--resume` without the shim must end identical to the uninterrupted run.

    python benchmarks/chaos.py --enospc
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = ["schedule.iterations=4", "schedule.images_per_iteration=1",
             "solver.num_rollouts=3", "solver.max_new_tokens=96", "proposer.max_new_tokens=24",
             "proposer.update_every=2", "data.synthetic_count=4", "rewards.warmup_iterations=1",
             "rewards.ramp_iterations=1", "storage.compact_every=2",
             "storage.keep_checkpoints_every=2", "evaluation.every=2", "evaluation.limit=2",
             "evaluation.max_new_tokens=32"]
STAGES = ("propose", "solve", "score", "update")
CHUNK_NAME = re.compile(r"^\d{6}-\d{6}\.parquet")  # a chunk or its temporary, dot stripped


def _start(run: Path, resume: bool, env: dict[str, str] | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "flows.cli", "-q", "train", "--config",
               "configs/smoke.yaml", "--run-dir", str(run)]
    for item in OVERRIDES:
        command += ["--set", item]
    if resume:
        command.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           **(env or {})}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=1800)
    if process.returncode != 0:
        raise RuntimeError(f"training exited {process.returncode}:\n{output[-3000:]}")


def _compaction_in_progress(run: Path) -> str | None:
    """A compaction caught midway, table by table, or None: a block with a chunk (or a chunk's
    temporary) in some table while some table still holds per-iteration files of it."""
    blocks = {tuple(int(n) for n in p.name.lstrip(".")[:13].split("-"))
              for p in run.glob("*/*") if CHUNK_NAME.match(p.name.lstrip("."))}
    for first, last in sorted(blocks):
        chunk = f"{first:06d}-{last:06d}.parquet"
        done, writing, pending, shadowed = [], [], [], []
        for folder in sorted(p for p in run.iterdir() if p.is_dir()):
            loose = [folder / f"{i:06d}.parquet" for i in range(first, last + 1)
                     if (folder / f"{i:06d}.parquet").exists()]
            if (folder / chunk).exists():
                done.append(folder.name)
                shadowed += [f"{folder.name}/{p.stem}" for p in loose]
            elif any(folder.glob(f".{chunk}.*.tmp")):
                writing.append(folder.name)
            elif loose:
                pending.append(folder.name)
        if writing or pending or shadowed:
            return (f"compaction of {first}-{last}: chunk written in {', '.join(done) or 'none'}"
                    + (f" (per-iteration files still there: {', '.join(shadowed)})"
                       if shadowed else "")
                    + (f"; chunk's temporary in {', '.join(writing)}" if writing else "")
                    + f"; not begun in {', '.join(pending) or 'none'}")
    return None


def _in_progress(run: Path) -> str:
    """What a kill interrupted, read from the markers and temporary files on disk."""
    compaction = _compaction_in_progress(run)
    if compaction:
        return compaction
    partial = sorted(p.relative_to(run).as_posix() for p in run.rglob("*.tmp"))
    if any(p.startswith("eval/") for p in partial):  # the merged copy lmms-eval reads
        return f"evaluation of {next(p for p in partial if p.startswith('eval/')).split('/')[1]}"
    if partial or any((run / "checkpoints").glob("*/.*")):
        return f"a write ({partial[0] if partial else 'checkpoint'})"
    done = sorted((run / "stages").glob("*/*.json")) if (run / "stages").is_dir() else []
    if not done:
        return "start-up (before iteration 1)"
    last = max(done, key=lambda p: p.stat().st_mtime_ns)  # names sort evaluate < propose
    iteration, stage = int(last.parent.name), last.stem
    if stage in ("update", "evaluate"):
        return f"after iteration {iteration}'s {stage} (evaluation, publish or compaction)"
    following = STAGES[STAGES.index(stage) + 1] if stage in STAGES else "?"
    return f"iteration {iteration}, {following}"


def _tables(run: Path) -> dict[str, object]:
    """Every table's rows, sorted, with wall-time columns dropped; the final adapters; which
    files hold them (a resumed run compacts as the uninterrupted one did, leaving nothing
    shadowed or temporary)."""
    import polars as pl

    out = {}
    for directory in sorted(p for p in run.iterdir() if p.is_dir()):
        files = sorted(directory.glob("*.parquet"))
        if not files or directory.name in {"eval", "checkpoints"}:
            continue
        out[f"files:{directory.name}"] = sorted(p.name for p in directory.iterdir())
        frame = pl.concat([pl.from_arrow(pq.read_table(f)) for f in files], how="vertical")
        frame = frame.drop([c for c in frame.columns if c.startswith("seconds")])
        out[directory.name] = frame.sort(pl.all())
    for role in ("solver", "proposer"):
        path = run / "checkpoints" / "iter-000004" / "adapters" / role
        out[f"adapter:{role}"] = load_file(str(path / "adapter_model.safetensors"))
    return out


def _same(a: dict, b: dict) -> list[str]:
    differ = sorted(set(a) ^ set(b))
    for key in set(a) & set(b):
        if key.startswith("adapter:"):
            if a[key].keys() != b[key].keys() or any((a[key][k] != b[key][k]).any()
                                                     for k in a[key]):
                differ.append(key)
        elif key.startswith("files:"):
            if a[key] != b[key]:
                differ.append(key)
        elif not a[key].equals(b[key]):
            differ.append(key)
    return differ


# (marker that must exist, what the kill then interrupts); None = from the start.
MOMENTS = [
    (None, "start-up: prepare, checkpoint 0"),
    ("stages/000001/propose.json", "iteration 1 solve"),
    ("stages/000001/solve.json", "iteration 1 score"),
    ("stages/000001/score.json", "iteration 1 update and its checkpoint write"),
    ("stages/000002/propose.json", "iteration 2 solve"),
    ("stages/000002/score.json", "iteration 2 update (Proposer too) and checkpoint write"),
    ("stages/000002/update.json", "iteration 2 evaluation"),
    ("stages/000002/evaluate.json", "iteration 2 publish and compaction"),
    ("stages/000003/solve.json", "iteration 3 score"),
    ("stages/000004/propose.json", "iteration 4 solve"),
    ("stages/000004/update.json", "iteration 4 evaluation, publish and compaction"),
]


# Compaction, by watching: (marker, glob under the run whose first match starts the kill, the
# most milliseconds drawn to wait after it, what the kill interrupts).
COMPACTION_WATCHED = [
    ("stages/000002/evaluate.json", "*/*000001-000002.parquet*", 0,
     "compaction of 1-2, at its first sign (a chunk's temporary or a chunk)"),
    ("stages/000002/evaluate.json", "*/000001-000002.parquet", 40,
     "compaction of 1-2, after its first chunk"),
    ("stages/000004/evaluate.json", "*/000003-000004.parquet", 40,
     "compaction of 3-4 (the run's last act), after its first chunk"),
]
# Compaction, at an exact file operation through tests/fixtures/killat.c: (call, a substring of
# its path, which matching call, what the kill interrupts). Tables compact in name order.
COMPACTION_EXACT = [
    ("unlink", "/questions/000001.parquet", 1,
     "compaction of 1-2 between the questions chunk's rename and the removal of its files"),
    ("rename", "/rewards/.000001-000002.parquet.", 1,
     "compaction of 1-2, the rewards chunk written, not yet renamed"),
    ("unlink", "/steps/000004.parquet", 1,
     "compaction of 3-4 between the removals of steps' two per-iteration files"),
]


def _wait_for(run: Path, marker: str | None, process: subprocess.Popen,
              pattern: str | None = None) -> bool:
    """Until `marker` exists, then (if given) something matching `pattern` does; False if the
    run ended first. Compaction lasts ~0.1-0.5 s, so its pattern is polled every millisecond."""
    while marker is not None and not (run / marker).exists():
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    while pattern is not None and next(run.glob(pattern), None) is None:
        if process.poll() is not None:
            return False
        time.sleep(0.001)
    return process.poll() is None


def _kill_and_resume(run: Path, process: subprocess.Popen, reference: dict) -> tuple[str, list]:
    """kill -9 the process group (if the shim has not), read where it landed, resume, compare."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    moment = _in_progress(run)
    _finish(_start(run, resume=True))
    return moment, _same(reference, _tables(run))


# (path pattern, bytes let through, what the full disk interrupts, the file it must not leave)
ENOSPC_TARGETS = [
    ("/questions/.000001.parquet.", 0, "iteration 1 propose", "questions/000001.parquet"),
    ("/rollouts/.000002.parquet.", 0, "iteration 2 solve", "rollouts/000002.parquet"),
    ("/rewards/.000003.parquet.", 0, "iteration 3 score", "rewards/000003.parquet"),
    ("/checkpoints/.iter-000002.", 20_000, "iteration 2 update, 20 kB into its checkpoint",
     "checkpoints/iter-000002"),
    ("/stages/000003/.update.json.", 0, "iteration 3 update's stage marker",
     "stages/000003/update.json"),
    ("/steps/.000001-000002.parquet.", 0, "compaction of iterations 1-2",
     "steps/000001-000002.parquet"),
]


def _enospc(root: Path, reference: dict) -> tuple[int, int]:
    """Each ENOSPC target, then --resume; returns (identical and clean, counted)."""
    library = _build_shim(root, "enospc")
    good = 0
    for k, (match, after, intended, target) in enumerate(ENOSPC_TARGETS):
        run = root / f"enospc-{k}"
        env = {"LD_PRELOAD": str(library), "ENOSPC_MATCH": match, "ENOSPC_AFTER": str(after)}
        process = _start(run, resume=False, env=env)
        output, _ = process.communicate(timeout=1800)
        line = next((x for x in output.splitlines() if x.startswith("ireasoner: error:")), "")
        partial = [p.relative_to(run).as_posix() for p in run.rglob("*")
                   if p.name.endswith((".tmp", ".old"))]
        problems = []
        if process.returncode != 2 or "the disk is full" not in line:
            problems.append(f"exit {process.returncode}, no DiskFull line")
        if "Traceback" in output:
            problems.append("a traceback was printed")
        if partial or (run / target).exists():
            problems.append(f"left {partial or target}")
        _finish(_start(run, resume=True))
        differ = _same(reference, _tables(run))
        if differ:
            problems.append(f"resumed run differs: {', '.join(differ)}")
        good += not problems
        print(f"disk full at {intended}: {line.removeprefix('ireasoner: error: ')[:110]}...; "
              f"{'; '.join(problems) or 'nothing partial, resumed run identical'}", flush=True)
    return good, len(ENOSPC_TARGETS)


def _show(results: list[tuple[str, str, list]]) -> None:
    intended, moment, differ = results[-1]
    verdict = "identical" if not differ else f"DIFFERS: {', '.join(differ)}"
    print(f"kill {len(results)} aimed at {intended}; on disk: {moment}: {verdict}", flush=True)


def _build_shim(root: Path, name: str) -> Path:
    library = root / f"{name}.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(library),
                    str(REPO / "tests" / "fixtures" / f"{name}.c"), "-ldl"], check=True)
    return library


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--enospc", action="store_true",
                        help="fill the disk at aimed writes instead of killing the run")
    parser.add_argument("--moments", default="run,compaction",
                        help="which kills, comma-separated: run (a marker plus a delay, over "
                             "the whole run), compaction (aimed at compaction)")
    args = parser.parse_args()
    moments = set(args.moments.split(","))
    if not moments or moments - {"run", "compaction"}:
        parser.error(f"--moments {args.moments}: choose from run, compaction")
    root = Path(tempfile.mkdtemp(prefix="chaos-"))
    start = time.perf_counter()
    _finish(_start(root / "reference", resume=False))
    reference = _tables(root / "reference")
    print(f"reference: {time.perf_counter() - start:.0f} s, "
          f"tables {sorted(k for k in reference if ':' not in k)}", flush=True)
    if args.enospc:
        good, counted = _enospc(root, reference)
        print(f"{good} of {counted} full-disk runs failed cleanly and resumed identical "
              f"({time.perf_counter() - start:.0f} s; runs under {root})")
        return 0 if good == counted else 1
    draw = random.Random(args.seed)
    results: list[tuple[str, str, list]] = []  # (aimed at, landed at, tables that differ)
    if "run" in moments:
        for k, (marker, intended) in enumerate(MOMENTS):
            run = root / f"kill-{k}"
            process = _start(run, resume=False)
            if not _wait_for(run, marker, process):
                print(f"kill {k + 1} ({intended}): the run ended first; not counted")
                continue
            time.sleep(draw.uniform(0.0, 1.5) + (3.0 if marker is None else 0.0))
            if process.poll() is not None:
                print(f"kill {k + 1} ({intended}): the run ended first; not counted")
                continue
            results.append((intended, *_kill_and_resume(run, process, reference)))
            _show(results)
    if "compaction" in moments:
        for k, (marker, pattern, most_ms, intended) in enumerate(COMPACTION_WATCHED):
            run = root / f"compaction-watched-{k}"
            process = _start(run, resume=False)
            if not _wait_for(run, marker, process, pattern):
                print(f"kill ({intended}): the run ended first; not counted")
                continue
            time.sleep(draw.uniform(0.0, most_ms / 1000))
            results.append((intended, *_kill_and_resume(run, process, reference)))
            _show(results)
        library = _build_shim(root, "killat")
        for k, (call, match, nth, intended) in enumerate(COMPACTION_EXACT):
            run = root / f"compaction-exact-{k}"
            process = _start(run, resume=False, env={
                "LD_PRELOAD": str(library), "KILL_AT_CALL": call, "KILL_AT_MATCH": match,
                "KILL_AT_NTH": str(nth)})
            process.communicate(timeout=1800)
            if process.returncode != -signal.SIGKILL:
                print(f"kill ({intended}): exited {process.returncode}, the shim never fired; "
                      "not counted")
                continue
            results.append((intended, *_kill_and_resume(run, process, reference)))
            _show(results)
    identical = sum(not differ for *_, differ in results)
    counted = len(results)
    print(f"{identical} of {counted} interrupted runs identical to the uninterrupted one "
          f"({time.perf_counter() - start:.0f} s; runs under {root})")
    return 0 if identical == counted else 1


if __name__ == "__main__":
    raise SystemExit(main())
