"""A run directory: manifest, per-iteration tables, stage markers, checkpoints.

    <run>/manifest.json                 what the method records (config, stage list, versions)
    <run>/LOCK                          held by the training process (storage.lock)
    <run>/<table>/<iteration:06d>.parquet   one stage's table of one iteration
    <run>/<table>/<first:06d>-<last:06d>.parquet   completed iterations, compacted (storage.layout)
    <run>/stages/<iteration:06d>/<stage>.json   written last: the stage is complete; it
                                        records the files the stage wrote (storage.integrity)
    <run>/checkpoints/iter-<iteration:06d>/     policy state after that iteration's last stage
    <run>/damaged/<time>/...                   files `ireasoner repair` moved aside, REPAIR.json

The store knows nothing of the method: the caller gives it the manifest's contents, the check a
resume must pass, and (in the manifest, under "stages") the stage list whose last stage
completes an iteration. Polars reads a whole table in one call:
`pl.read_parquet(f"{run}/rewards/*.parquet")`.

A run may also live at an fsspec URL (`s3://bucket/run`): the store then works in a local
mirror of it (`root`), pulled before and pushed after each task (storage.remote), and a lease
(storage.lease) stands in for the lock.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_write_json, atomic_write_parquet, cleanup_partial
from storage.integrity import Damage, check_file, file_record
from storage.layout import TableFolder, is_table_file, iteration_file
from storage.lease import RunLease
from storage.lock import run_lock
from storage.remote import Mirror, default_mirror, is_url
from storage.transient import TransientStorageError, is_transient

COMPLETE_MARKER = "COMPLETE"
DAMAGED_DIR = "damaged"  # what `ireasoner repair` moved aside (RunStore.set_aside)
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ResumeRefused(ValueError):
    """Resuming a run that the caller's check refuses (a config that would train differently,
    artifacts of another schema)."""


class DamagedRun(ResumeRefused):
    """Files a completed stage wrote are truncated, corrupt or gone: resuming would read them."""

    def __init__(self, location: str, damage: list[Damage]):
        self.damage = damage
        lines = [f"run {location}: {_where(d)}: {location}/{d.path.as_posix()} {d.problem}"
                 for d in damage]
        super().__init__("\n".join(lines) + f"\nrun: ireasoner repair {location}  (it moves "
                         "the damaged files aside and marks their stages to be redone)")


def _where(damage: Damage) -> str:
    stage = f"stage {damage.stage!r}" if damage.stage else "a stage"
    return f"iteration {damage.iteration} {stage}"


class NotARun(FileExistsError):
    """Overwriting a directory (or URL prefix) that holds files but no run."""


class RunStore:
    def __init__(self, root: str | Path, *, mirror: str | Path | None = None):
        """`root`: a directory, or an fsspec URL worked on in `mirror` (default: a directory
        of $IREASONER_MIRRORS named after the URL)."""
        self.location = str(root)  # what messages name: the URL, not the mirror
        self.remote: Mirror | None = None
        self._mirror = mirror
        self._lease: RunLease | None = None
        # Files written since the last stage marker (relative path -> record): the next
        # marker vouches for them.
        self._written: dict[str, dict[str, Any]] = {}
        if is_url(root):
            self.root = Path(mirror) if mirror is not None else default_mirror(root)
            self.remote = Mirror(root, self.root, is_marker=_is_marker)
        else:
            self.root = Path(root)

    # A copy sent to another worker finds its own default mirror there, and holds no lease
    # (the sending process does).
    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "mirror": self._mirror}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"], mirror=state["mirror"])

    # ---- where the run lives: here, or at a URL through a mirror -------------------------
    def pull(self, *, checkpoints: bool = True) -> RunStore:
        """Bring the mirror up to date (a no-op for a local run); readers that need no policy
        state skip the checkpoints, the run's largest files."""
        if self.remote is not None:
            with _transient_marked("pulling", self.location):
                self.remote.pull(skip=() if checkpoints else ("checkpoints/",))
        return self

    def push(self) -> None:
        """Publish what this process wrote, stage markers last (a no-op for a local run)."""
        if self.remote is not None:
            if self._lease is not None:
                self._lease.check()
            with _transient_marked("pushing", self.location):
                self.remote.push()

    @contextlib.contextmanager
    def synced(self) -> Iterator[RunStore]:
        """Around a task that may run on another worker than the last: pull, work, push (a
        task that fails publishes nothing)."""
        self.pull()
        yield self
        self.push()

    @contextlib.contextmanager
    def lock(self, lease_seconds: float = 60.0) -> Iterator[None]:
        """One training process per run: an flock here, a lease at a URL."""
        if self.remote is None:
            with run_lock(self.root):
                yield
            return
        with self.remote.lease(lease_seconds) as lease:
            self._lease = lease
            try:
                yield
            finally:
                self._lease = None

    # ---- replacing a run (train --overwrite) ----------------------------------------------
    def move_aside(self, *, force: bool = False) -> Path | None:
        """Rename a local run to `<run>.replaced-<UTC time>`, holding its lock while doing so
        (so a run another process trains is refused, never touched); returns the new path, or
        None when there was nothing to move. A non-empty directory without a manifest is not a
        run: refused (NotARun) unless `force`."""
        if self.remote is not None:
            raise ValueError(f"{self.location} is a URL: list_remote() then remove_remote()")
        if not self.root.exists() or not any(self.root.iterdir()):
            return None
        self._refuse_if_not_a_run(self.exists(), force)
        with run_lock(self.root):
            aside = _aside_path(self.root)
            self.root.rename(aside)  # our flock stays on LOCK, now inside the moved run
        return aside

    def list_remote(self) -> dict[str, int]:
        """At a URL: the remote run's files (relative path -> bytes), what remove_remote()
        deletes."""
        if self.remote is None:
            raise ValueError(f"{self.location} is not a URL")
        return self.remote.list_sizes()

    def remove_remote(self, *, force: bool = False, lease_seconds: float = 60.0) -> int:
        """At a URL: delete the remote run under its lease (so a run being trained is refused)
        and this machine's mirror; returns the number of files deleted. A non-empty prefix
        without a manifest is not a run: refused (NotARun) unless `force`."""
        files = self.list_remote()
        if not files:
            return 0
        self._refuse_if_not_a_run("manifest.json" in files, force)
        # Markers first, the manifest last: a deletion cut short never leaves a marker vouching
        # for files that are gone, nor files that no manifest calls a run.
        order = sorted(files, key=lambda rel: (not _is_marker(rel), rel == "manifest.json", rel))
        with self.lock(lease_seconds):
            self.remote.delete(order)
        if self.root.exists():
            shutil.rmtree(self.root)
        return len(files)

    def _refuse_if_not_a_run(self, is_run: bool, force: bool) -> None:
        if not is_run and not force:
            raise NotARun(f"{self.location} holds files but no manifest.json: it is not a run, "
                          "so --overwrite leaves it alone; pass --force to replace it anyway")

    # ---- the manifest -------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        if not self.exists():
            raise FileNotFoundError(f"{self.location} is not a run directory (no manifest.json)")
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def open(self, fields: dict[str, Any], *, resume: bool,
             on_resume: Callable[[dict[str, Any]], dict[str, Any]] = lambda manifest: {}
             ) -> RunStore:
        """Start a new run here with a manifest of `fields`, or resume the one here:
        `on_resume` gets its manifest and returns the fields to change in it (the caller's
        check: it raises ResumeRefused to refuse)."""
        self.pull()
        if self.exists():
            if not resume:
                raise FileExistsError(
                    f"{self.location} already holds a run; pass --resume to continue it, or "
                    "choose another --run-dir to start a new one")
            manifest = self.manifest()
            changes = on_resume(manifest)
            cleanup_partial(self.root)
            self.write_manifest({**manifest, **changes,
                                 "resumed_at": manifest.get("resumed_at", []) + [_now()]})
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.write_manifest({**fields, "created_at": _now()})
        self.push()
        return self

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def update_manifest(self, **fields: Any) -> None:
        self.write_manifest({**self.manifest(), **fields})

    # ---- tables -------------------------------------------------------------------------
    # Once compacted (storage.compaction), an iteration's rows live in a chunk file: these
    # methods find them there; `table_path` is only where a stage writes its own file.
    def table_path(self, name: str, iteration: int) -> Path:
        return iteration_file(self._table_dir(name), iteration)

    def table_folder(self, name: str) -> TableFolder:
        """The table's files, listed now."""
        return TableFolder(self._table_dir(name))

    def _table_dir(self, name: str) -> Path:
        if not _TABLE_NAME.match(name):
            raise ValueError(f"table name {name!r} must be lower-case letters, digits and _")
        return self.root / name

    def tables(self) -> list[str]:
        """The tables this run holds: its folders of iteration or chunk files."""
        return sorted(folder.name for folder in self.root.iterdir()
                      if folder.is_dir() and _TABLE_NAME.match(folder.name)
                      and any(is_table_file(path) for path in folder.glob("*.parquet"))) \
            if self.root.is_dir() else []

    def write_table(self, name: str, iteration: int, table: pa.Table) -> Path:
        """Atomically, as one file: a reader sees the whole table of the iteration or none.
        The table's schema is the caller's (the store checks none)."""
        path = atomic_write_parquet(self.table_path(name, iteration), table)
        self._record(path, rows=table.num_rows)
        return path

    def read_table(self, name: str, iteration: int) -> pa.Table:
        try:  # the iteration's own file first: no listing of the folder
            return pq.read_table(self.table_path(name, iteration))
        except FileNotFoundError:
            return self.table_folder(name).read_compacted(iteration)

    def has_table(self, name: str, iteration: int) -> bool:
        return (self.table_path(name, iteration).is_file()
                or self.table_folder(name).chunk_of(iteration) is not None)

    def table_iterations(self, name: str) -> list[int]:
        """The iterations that have a table `name`, ascending."""
        return self.table_folder(name).iterations()

    def scan(self, name: str, iterations: Iterable[int] | None = None, *,
             schema: pa.Schema | None = None) -> pl.LazyFrame:
        """A table's rows, of all iterations or only of `iterations`, lazily; when there are
        none, an empty frame (with `schema`'s columns, if given). Opens only the files holding
        those iterations."""
        wanted = None if iterations is None else sorted(set(iterations))
        files = self.table_folder(name).files(wanted)
        if not files:
            return pl.LazyFrame() if schema is None else pl.from_arrow(schema.empty_table()).lazy()
        frame = pl.scan_parquet([str(f) for f in files])
        return frame if wanted is None else frame.filter(pl.col("iteration").is_in(wanted))

    # ---- stages -------------------------------------------------------------------------
    def _marker(self, iteration: int, stage: str) -> Path:
        return self.root / "stages" / f"{iteration:06d}" / f"{stage}.json"

    def stage_done(self, iteration: int, stage: str) -> bool:
        return self._marker(iteration, stage).is_file()

    def stage_info(self, iteration: int, stage: str) -> dict[str, Any]:
        """The stage's summary, as it returned it (the files it wrote aside)."""
        info = json.loads(self._marker(iteration, stage).read_text(encoding="utf-8"))
        info.pop("files", None)
        return info

    def stage_files(self, iteration: int, stage: str) -> dict[str, dict[str, Any]]:
        """The files the stage wrote (relative path -> size, sha256, rows); empty for a marker
        written before the records existed."""
        info = json.loads(self._marker(iteration, stage).read_text(encoding="utf-8"))
        return info.get("files", {})

    def start_stage(self) -> None:
        """Forget writes no marker vouched for (a failed attempt's): a stage starts afresh."""
        self._written.clear()

    def record_files(self, directory: Path) -> None:
        """Have the next marker vouch for every file under `directory` (a checkpoint)."""
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file():
                self._record(path)

    def _record(self, path: Path, rows: int | None = None) -> None:
        self._written[path.relative_to(self.root).as_posix()] = file_record(path, rows)

    def mark_done(self, iteration: int, stage: str, info: dict[str, Any]) -> None:
        """Written after every artifact of the stage: from here on the stage is complete. It
        records the files written since the stage started, what a resume checks."""
        files, self._written = self._written, {}
        atomic_write_json(self._marker(iteration, stage),
                          {"finished_at": _now(), **info, "files": files})

    def markers(self) -> list[tuple[int, str]]:
        """Every completed (iteration, stage), ascending by iteration."""
        folder = self.root / "stages"
        return sorted((int(marker.parent.name), marker.stem)
                      for marker in folder.glob("*/*.json")) if folder.is_dir() else []

    # ---- integrity ----------------------------------------------------------------------
    def verify(self, *, full: bool = False) -> list[Damage]:
        """The damaged files among those completed stages wrote (storage.integrity): recorded
        files by size (`full`: and sha256), chunks and checkpoints' tensors by structure. A
        recorded file that compaction merged, or a pruned checkpoint, is not missing."""
        damage: list[Damage] = []
        checked: set[str] = set()
        folders = {name: self.table_folder(name) for name in self.tables()}  # listed once
        writers: dict[str, str] = {}  # table -> the stage that writes it
        for iteration, stage in self.markers():
            for rel, record in self.stage_files(iteration, stage).items():
                checked.add(rel)
                table, _, name = rel.partition("/")
                if _TABLE_NAME.match(table) and is_table_file(Path(name)):
                    writers.setdefault(table, stage)
                path = self.root / rel
                if not path.exists() and self._moved_on(rel, folders):
                    continue
                problem = check_file(path, record, full=full)
                if problem:
                    damage.append(Damage(Path(rel), problem, iteration, stage))
        for name, folder in folders.items():
            unrecorded = [(first, chunk) for first, _, chunk in folder.chunks]
            unrecorded += [(iteration, path) for iteration, path in folder.loose.items()]
            for iteration, path in unrecorded:
                rel = path.relative_to(self.root).as_posix()
                if rel not in checked and (problem := check_file(path)):
                    damage.append(Damage(Path(rel), problem, iteration, writers.get(name)))
        stages = self.manifest().get("stages") or [None]
        for iteration, path in self.checkpoints():
            for tensors in sorted(path.rglob("*.safetensors")):
                rel = tensors.relative_to(self.root).as_posix()
                if rel not in checked and (problem := check_file(tensors)):
                    stage = "prepare" if iteration == 0 else stages[-1]
                    damage.append(Damage(Path(rel), problem, iteration, stage))
        return sorted(damage, key=lambda d: (d.iteration, d.path.as_posix()))

    def require_intact(self) -> None:
        """Refuse (DamagedRun, naming each file, its stage and `ireasoner repair`) to go on
        with a run whose completed stages' files are damaged."""
        damage = self.verify()
        if damage:
            raise DamagedRun(self.location, damage)

    def set_aside(self, paths: Iterable[str], record: dict[str, Any]) -> Path:
        """Move run files (relative paths; a checkpoint's directory as a whole) to
        `<run>/damaged/<UTC time>/`, where they keep their relative paths, with `record`
        (why) as REPAIR.json beside them; returns that folder. Nothing is deleted."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        folder, n = self.root / DAMAGED_DIR / stamp, 1
        while folder.exists():
            folder, n = self.root / DAMAGED_DIR / f"{stamp}-{n}", n + 1
        # Stage markers first: a move cut short never leaves a marker whose files are gone.
        for rel in sorted(set(paths), key=lambda rel: (not rel.startswith("stages/"), rel)):
            source = self.root / rel
            if source.exists():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                source.rename(folder / rel)
        atomic_write_json(folder / "REPAIR.json", record)
        return folder

    def _moved_on(self, rel: str, folders: dict[str, TableFolder]) -> bool:
        """A recorded file gone for a good reason: merged into a chunk, or a pruned checkpoint."""
        parts = rel.split("/")
        if parts[0] == "checkpoints":
            return not (self.root / parts[0] / parts[1]).is_dir()
        if len(parts) == 2 and parts[0] in folders and is_table_file(Path(parts[1])):
            held = int(parts[1][:6])  # a chunk's span will do: its own check reads it
            return any(first <= held <= last for first, last, _ in folders[parts[0]].chunks)
        return False

    def stages(self) -> list[str]:
        """The run's stage list, as the manifest records it: the last completes an iteration."""
        stages = self.manifest().get("stages")
        if not stages:
            raise FileNotFoundError(f"{self.manifest_path} records no stage list")
        return list(stages)

    def completed_iterations(self) -> int:
        """The number of leading iterations whose last stage is complete."""
        last, done = self.stages()[-1], 0
        while self.stage_done(done + 1, last):
            done += 1
        return done

    # ---- checkpoints --------------------------------------------------------------------
    def checkpoint_dir(self, iteration: int) -> Path:
        return self.root / "checkpoints" / f"iter-{iteration:06d}"

    def checkpoints(self) -> list[tuple[int, Path]]:
        found = []
        for path in sorted((self.root / "checkpoints").glob("iter-*")):
            if (path / COMPLETE_MARKER).is_file():
                found.append((int(path.name.removeprefix("iter-")), path))
        return found

    def prune_checkpoints(self, keep_every: int, latest: int) -> None:
        """Drop older checkpoints, keeping the latest and (if set) every `keep_every`-th."""
        for iteration, path in self.checkpoints():
            if iteration == latest or (keep_every and iteration % keep_every == 0):
                continue
            shutil.rmtree(path)


def _is_marker(rel: str) -> bool:
    """Files that vouch for others (storage.remote uploads them last): stage markers and
    checkpoints' COMPLETE."""
    return rel.startswith("stages/") or rel.rsplit("/", 1)[-1] == COMPLETE_MARKER


@contextlib.contextmanager
def _transient_marked(doing: str, location: str) -> Iterator[None]:
    """Re-raise a sync failure that may pass as TransientStorageError (what a task retries)."""
    try:
        yield
    except Exception as err:
        if isinstance(err, TransientStorageError) or not is_transient(err):
            raise
        raise TransientStorageError(f"{doing} {location} failed, possibly for a moment: "
                                    f"{type(err).__name__}: {err}") from err


def _aside_path(root: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside, n = root.with_name(f"{root.name}.replaced-{stamp}"), 1
    while aside.exists():
        aside, n = root.with_name(f"{root.name}.replaced-{stamp}-{n}"), n + 1
    return aside


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
