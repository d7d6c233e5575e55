"""One training process per run at a URL: a lease, the remote stand-in for `storage.lock`.

An flock cannot span machines, so the trainer holds `<run>/LEASE`, a small JSON object naming
it (holder id, host, pid) and the time it expires. It is taken when absent or expired, renewed
by a heartbeat thread every quarter of its lifetime, and deleted on exit; a trainer killed by
`kill -9` leaves it behind, and it can be taken over once it has expired.

Taking and renewing it are conditional writes on S3 (`If-None-Match: *` to create,
`If-Match: <ETag>` to replace), so two trainers cannot both win. Elsewhere fsspec offers no
conditional write (on file://, creating is exclusive, replacing is not): the lease is written,
then read back after a pause, which narrows the race between two trainers starting within that
pause but cannot close it. Expiry compares wall clocks, so the machines' clocks must agree to
well within the lease's lifetime.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from storage.lock import RunLocked

log = logging.getLogger(__name__)

LEASE = "LEASE"
# Without conditional writes: how long a written lease must survive before it counts as ours.
READ_BACK_PAUSE_S = 0.5


class RunLease:
    def __init__(self, fs, path: str, location: str, seconds: float):
        self.fs, self.path, self.location, self.seconds = fs, path, location, seconds
        self.conditional = "s3" in _protocols(fs)
        self.record = {"holder": uuid.uuid4().hex, "host": socket.gethostname(),
                       "pid": os.getpid(), "since": _now_iso(), "expires": 0.0}
        self.lost: str | None = None
        self._renewed = 0.0  # time.monotonic() of the last successful write

    def acquire(self) -> None:
        self.record["expires"] = time.time() + self.seconds
        try:
            self._write(create=True)
        except FileExistsError:
            current, etag = self._read()
            if current is not None and current["expires"] > time.time():
                raise self._refusal(current) from None
            try:  # expired, or released meanwhile: take it over
                self._write(create=current is None, etag=etag)
            except OSError:  # another trainer took it over first (a failed If-Match)
                raise self._refusal(self._read()[0]) from None
        if not self.conditional:
            time.sleep(READ_BACK_PAUSE_S)
            current, _ = self._read()
            if current is None or current["holder"] != self.record["holder"]:
                raise self._refusal(current)

    def renew(self) -> None:
        current, etag = self._read()
        if current is None or current["holder"] != self.record["holder"]:
            self.lost = (f"the lease on {self.location} was lost to "
                         f"{_describe(current) if current else 'nobody (deleted)'}")
            return
        self.record["expires"] = time.time() + self.seconds
        self._write(etag=etag)

    def check(self) -> None:
        """Raise RunLocked unless the lease is still certainly ours: before publishing a stage."""
        if self.lost:
            raise RunLocked(f"{self.lost}; stopping before writing anything more")
        if time.monotonic() - self._renewed > self.seconds:
            raise RunLocked(f"the lease on {self.location} was not renewed for "
                            f"{self.seconds:.0f} s and may be held by another training now; "
                            "stopping before writing anything more")

    def release(self) -> None:
        current, _ = self._read()
        if current is not None and current["holder"] == self.record["holder"]:
            self.fs.rm_file(self.path)

    def heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(self.seconds / 4) and not self.lost:
            try:
                self.renew()
            except OSError as err:  # a network blip: the next beat retries, check() sees expiry
                log.warning("renewing the lease on %s failed: %s", self.location, err)

    # ---- the object ---------------------------------------------------------------------
    def _read(self) -> tuple[dict[str, Any] | None, str | None]:
        self.fs.invalidate_cache(self.path)
        try:
            etag = self.fs.info(self.path).get("ETag")
            return json.loads(self.fs.cat_file(self.path)), etag
        except FileNotFoundError:
            return None, None

    def _write(self, create: bool = False, etag: str | None = None) -> None:
        data = json.dumps(self.record).encode()
        if isinstance(self.fs, LocalFileSystem):
            _write_local(Path(self.path), data, create)
        elif create:
            self.fs.pipe_file(self.path, data, mode="create")
        elif self.conditional and etag:
            self.fs.pipe_file(self.path, data, IfMatch=etag)
        else:
            self.fs.pipe_file(self.path, data)
        self._renewed = time.monotonic()

    def _refusal(self, current: dict[str, Any] | None) -> RunLocked:
        holder = _describe(current) if current else "unknown process"
        left = f", its lease expires in {current['expires'] - time.time():.0f} s" if current else ""
        return RunLocked(f"run {self.location} is in use by another training ({holder}{left}); "
                         "wait for it to finish, stop it, or train into another --run-dir")


@contextlib.contextmanager
def run_lease(fs, path: str, location: str, seconds: float = 60.0) -> Iterator[RunLease]:
    lease = RunLease(fs, path, location, seconds)
    lease.acquire()
    stop = threading.Event()
    beat = threading.Thread(target=lease.heartbeat, args=(stop,), name="run-lease", daemon=True)
    beat.start()
    try:
        yield lease
    finally:
        stop.set()
        beat.join()
        lease.release()


def _write_local(path: Path, data: bytes, create: bool) -> None:
    """file://: a reader sees the whole lease or none (fsspec's write truncates first), and
    creating is exclusive (a hard link fails when the name exists)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    try:
        if create:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _describe(record: dict[str, Any]) -> str:
    return f"pid {record['pid']} on {record['host']}, since {record['since']}"


def _protocols(fs) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
