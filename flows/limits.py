"""Prefect global concurrency limits around the flows, so requests queue instead of colliding.

    ireasoner-run-<hash of the run's location>   limit 1: one process trains (or is queued
                                                  to train) a run directory at a time
    ireasoner-gpu                                 one slot per GPU of the host that created it:
                                                  training and evaluation never oversubscribe

Only where a Prefect server is configured (PREFECT_API_URL): without one, every process has its
own ephemeral database, so a limit there coordinates nothing, and the run store's lease lock
still refuses a second writer. Change the GPU count with `prefect gcl update ireasoner-gpu
--limit N`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.settings import get_current_settings

GPU_LIMIT = "ireasoner-gpu"


def run_limit(location: str) -> str:
    # A location may hold characters a limit name may not: name it by a hash.
    return "ireasoner-run-" + hashlib.sha256(location.encode()).hexdigest()[:16]


def uses_gpu(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def server_configured() -> bool:
    return bool(get_current_settings().api.url)


@contextlib.contextmanager
def slots(names: list[str], *, limits: dict[str, int]) -> Iterator[None]:
    """Hold one slot of each named limit for the block, waiting while they are taken; a limit
    missing on the server is created with its entry in `limits`."""
    if not names or not server_configured():
        yield
        return
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_global_concurrency_limit_by_name(name)
            except Exception:  # noqa: BLE001 - ObjectNotFound; a race with a second creator
                with contextlib.suppress(Exception):
                    client.upsert_global_concurrency_limit_by_name(name, limits[name])
    # strict: a limit that vanished must stop the flow, not let it run unguarded.
    with concurrency(names, occupy=1, strict=True):
        yield


def training_slots(location: str, device: str) -> contextlib.AbstractContextManager[None]:
    names = [run_limit(location)] + ([GPU_LIMIT] if uses_gpu(device) else [])
    return slots(names, limits={names[0]: 1, GPU_LIMIT: _gpu_count()})


def evaluation_slots(device: str) -> contextlib.AbstractContextManager[None]:
    names = [GPU_LIMIT] if uses_gpu(device) else []
    return slots(names, limits={GPU_LIMIT: _gpu_count()})


def _gpu_count() -> int:
    return max(1, torch.cuda.device_count())
