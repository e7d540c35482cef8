"""Which entries of a cache to drop: the one pruning rule of the build, environment caches."""

from __future__ import annotations

import time
from typing import Protocol, Sequence, TypeVar


class _Entry(Protocol):
    size: int
    last_used: float


E = TypeVar("E", bound=_Entry)


def to_prune(entries: Sequence[E], older_than: float | None = None, max_bytes: int | None = None) -> list[E]:
    """Entries unused for `older_than` seconds, then the least recently used ones (`entries`
    oldest first) until the rest is at most `max_bytes`."""
    dropped: list[E] = []
    if older_than is not None:
        limit = time.time() - older_than
        dropped += [e for e in entries if e.last_used < limit]
    keep = [e for e in entries if e not in dropped]
    if max_bytes is not None:
        total = sum(e.size for e in keep)
        while keep and total > max_bytes:
            e = keep.pop(0)
            dropped.append(e)
            total -= e.size
    return dropped
