"""Deterministic seeds: one per (run, iteration, role, image), so a resumed run samples exactly
what an uninterrupted one would have, whatever stage it restarted from."""

from __future__ import annotations

import hashlib

ROLES = ("proposer", "solver", "critic", "rectifier", "data", "eval")


def derive_seed(run_seed: int, iteration: int, role: str, index: int = 0) -> int:
    """A 31-bit seed that depends on every argument and on nothing else (no global state)."""
    if role not in ROLES:
        raise ValueError(f"unknown seed role {role!r}; known: {', '.join(ROLES)}")
    key = f"{run_seed}/{iteration}/{role}/{index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & 0x7FFFFFFF
