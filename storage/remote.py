"""A run directory at an fsspec URL (`s3://bucket/run`, `gs://…`, `file:///shared/run`), worked
on through a local mirror so that every reader and writer of the run keeps using local paths.

`pull()` brings the mirror up to date with the remote; `push()` uploads what changed here and
deletes remotely what was deleted here. Both work by listing, so they know nothing of the
run's layout beyond which files are *markers* (a stage marker, a checkpoint's COMPLETE): a
marker vouches for other files, so push withdraws a marker it is about to replace before
uploading anything and uploads markers last, oldest first, and pull fetches them last. A crash
at any point of a sync therefore never leaves a marker without the files it vouches for.

What was synced is recorded in `<mirror>/.sync.json` (per file: local size and mtime, remote
size and ETag or mtime), so a sync transfers only changes and tells "changed here" from
"changed there"; when both changed, the remote wins (it is what every other worker sees).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from storage.atomic import atomic_write_json
from storage.lease import LEASE, run_lease

log = logging.getLogger(__name__)

SYNC_STATE = ".sync.json"
SYNC_LOCK = ".sync.lock"
# Top-level names that stay where they are: this machine's flock, the remote lease.
UNSYNCED = frozenset({"LOCK", LEASE})


class UnsupportedURL(ValueError):
    """A run URL whose protocol fsspec does not know or cannot reach here."""


def is_url(root: str | Path) -> bool:
    return isinstance(root, str) and "://" in root


def check_url(url: str) -> None:
    """Raise UnsupportedURL unless fsspec can open `url` here (without touching the network)."""
    protocol = url.split("://", 1)[0]
    if protocol == "memory":
        raise UnsupportedURL(f"{url}: memory:// does not outlive the process, a run there could "
                             "never be resumed or read by another worker")
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        raise UnsupportedURL(f"{url}: the {protocol}:// backend is not installed ({err})") from None
    except ValueError:
        raise UnsupportedURL(f"{url}: unknown protocol {protocol!r} (fsspec knows e.g. s3, gs, "
                             "az, file)") from None


def default_mirror(url: str) -> Path:
    """`$IREASONER_MIRRORS/<readable url>-<hash>`: one mirror per URL and machine (default
    under $IREASONER_CACHE, as the project's other caches, else ~/.cache/ireasoner)."""
    cache = os.environ.get("IREASONER_CACHE") or Path.home() / ".cache" / "ireasoner"
    root = os.environ.get("IREASONER_MIRRORS") or Path(cache) / "mirrors"
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", url.split("://", 1)[1]).strip("-")[-60:]
    return Path(root) / f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class SyncStats:
    files: int = 0
    bytes: int = 0
    deleted: int = 0
    seconds: float = 0.0


class Mirror:
    def __init__(self, url: str, local: Path, is_marker: Callable[[str], bool]):
        check_url(url)
        self.url = url
        self.fs, self.remote_root = url_to_fs(url)
        self.local = Path(local)
        self.is_marker = is_marker

    def remote_path(self, rel: str) -> str:
        return f"{self.remote_root}/{rel}"

    # ---- the two directions -------------------------------------------------------------
    def pull(self, skip: tuple[str, ...] = ()) -> SyncStats:
        """Fetch what is new or changed remotely; drop what another worker deleted there.
        `skip`: top-level names left out (a reader that needs no checkpoints)."""
        start = time.perf_counter()
        with self._state() as files:
            remote = {rel: tag for rel, tag in self._list_remote().items()
                      if not rel.startswith(skip)}
            # Unchanged remotely but missing here: deleted here, and the next push deletes it
            # there (a checkpoint `restore()` found stale must not come back).
            fetch = [rel for rel, tag in remote.items() if files.get(rel, {}).get("remote") != tag]
            size = 0
            for rel in sorted(fetch, key=self._markers_last):
                size += self._download(rel)
                files[rel] = {"local": _local_tag(self.local / rel), "remote": remote[rel]}
            gone = [rel for rel in files if rel not in remote and not rel.startswith(skip)]
            deleted = 0
            for rel in sorted(gone, key=self._markers_last, reverse=True):  # markers first
                path = self.local / rel
                # Changed here since the last sync: kept, and the next push uploads it again.
                if path.is_file() and _local_tag(path) == files[rel]["local"]:
                    path.unlink()
                    _remove_empty_parents(path.parent, self.local)
                    deleted += 1
                del files[rel]
        stats = SyncStats(len(fetch), size, deleted, time.perf_counter() - start)
        log.info("pulled %s: %d files (%d bytes), %d deleted, %.2f s", self.url, stats.files,
                 stats.bytes, stats.deleted, stats.seconds)
        return stats

    def push(self) -> SyncStats:
        """Upload what changed here and delete remotely what was deleted here, markers last."""
        start = time.perf_counter()
        with self._state() as files:
            local = self._list_local()
            changed = [rel for rel, tag in local.items() if files.get(rel, {}).get("local") != tag]
            gone = [rel for rel in files if rel not in local]
            # A marker about to be replaced or deleted stops vouching first.
            self._delete([rel for rel in gone + changed if self.is_marker(rel) and rel in files])
            artifacts = sorted(rel for rel in changed if not self.is_marker(rel))
            markers = sorted((rel for rel in changed if self.is_marker(rel)),
                             key=lambda rel: (local[rel][1], rel))  # in the order written
            size = 0
            for rel in artifacts:
                size += self._upload(rel, local[rel], files)
            self._delete([rel for rel in gone if not self.is_marker(rel)])
            for rel in markers:
                size += self._upload(rel, local[rel], files)
            for rel in gone:
                del files[rel]
        stats = SyncStats(len(changed), size, len(gone), time.perf_counter() - start)
        log.info("pushed %s: %d files (%d bytes), %d deleted, %.2f s", self.url, stats.files,
                 stats.bytes, stats.deleted, stats.seconds)
        return stats

    def lease(self, seconds: float):
        """The run's lease (storage.lease), a context manager."""
        if isinstance(self.fs, LocalFileSystem):  # object stores have no directories to make
            self.fs.makedirs(self.remote_root, exist_ok=True)
        return run_lease(self.fs, self.remote_path(LEASE), self.url, seconds)

    def list_sizes(self) -> dict[str, int]:
        """Every remote file of the run but the lease (relative path -> bytes)."""
        self.fs.invalidate_cache(self.remote_root)
        if not self.fs.exists(self.remote_root):
            return {}
        prefix = self.remote_root.rstrip("/") + "/"
        return {name[len(prefix):]: int(info.get("size") or 0)
                for name, info in self.fs.find(self.remote_root, detail=True).items()
                if name[len(prefix):] != LEASE}

    def delete(self, rels: list[str]) -> None:
        """Delete these remote files (relative paths); the caller holds the lease."""
        self._delete(rels)
        self.fs.invalidate_cache(self.remote_root)

    # ---- listings -----------------------------------------------------------------------
    def _list_remote(self) -> dict[str, str]:
        self.fs.invalidate_cache(self.remote_root)
        found = self.fs.find(self.remote_root, detail=True)
        prefix = self.remote_root.rstrip("/") + "/"
        return {name[len(prefix):]: _remote_tag(info) for name, info in found.items()
                if _synced(name[len(prefix):])}

    def _list_local(self) -> dict[str, list[int]]:
        found = {}
        for path in self.local.rglob("*"):
            rel = path.relative_to(self.local).as_posix()
            if path.is_file() and _synced(rel):
                found[rel] = _local_tag(path)
        return found

    # ---- transfers ----------------------------------------------------------------------
    def _download(self, rel: str) -> int:
        target = self.local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.pull.tmp")
        self.fs.get_file(self.remote_path(rel), str(tmp))
        os.replace(tmp, target)  # readers of the mirror see the whole file or the old one
        return target.stat().st_size

    def _upload(self, rel: str, local_tag: list[int], files: dict[str, Any]) -> int:
        source, target = self.local / rel, self.remote_path(rel)
        if isinstance(self.fs, LocalFileSystem):
            # file://: a copy can be seen half-written, a rename cannot.
            parent = self.fs._parent(target)
            self.fs.makedirs(parent, exist_ok=True)
            tmp = f"{parent}/.{rel.rsplit('/', 1)[-1]}.push.tmp"
            self.fs.put_file(str(source), tmp)
            self.fs.mv(tmp, target)
        else:
            self.fs.put_file(str(source), target)  # an object store's PUT is all-or-nothing
        files[rel] = {"local": local_tag, "remote": _remote_tag(self.fs.info(target))}
        return local_tag[0]

    def _delete(self, rels: list[str]) -> None:
        for rel in rels:
            with contextlib.suppress(FileNotFoundError):  # already gone: what we wanted
                self.fs.rm_file(self.remote_path(rel))

    # ---- the record of what was synced --------------------------------------------------
    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The per-file sync record, under an flock: a trainer and a reader (`ireasoner
        traces`) may share this mirror."""
        self.local.mkdir(parents=True, exist_ok=True)
        with open(self.local / SYNC_LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            path = self.local / SYNC_STATE
            state = json.loads(path.read_text()) if path.is_file() else {"url": self.url,
                                                                         "files": {}}
            if state["url"] != self.url:
                raise ValueError(f"{self.local} mirrors {state['url']}, not {self.url}; "
                                 "set IREASONER_MIRRORS to another directory")
            yield state["files"]
            atomic_write_json(path, state)

    def _markers_last(self, rel: str) -> tuple[bool, str]:
        return self.is_marker(rel), rel


def _synced(rel: str) -> bool:
    """Hidden names (temporaries, the sync record) and UNSYNCED stay where they are."""
    parts = rel.split("/")
    return parts[0] not in UNSYNCED and not any(p.startswith(".") for p in parts)


def _local_tag(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _remote_tag(info: dict[str, Any]) -> str:
    version = next((info[k] for k in ("ETag", "etag", "md5Hash", "generation", "mtime",
                                      "LastModified", "last_modified") if info.get(k)), "")
    return f"{info['size']}:{version}"


def _remove_empty_parents(directory: Path, root: Path) -> None:
    while directory != root and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent
