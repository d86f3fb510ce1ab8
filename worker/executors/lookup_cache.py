"""A per-process cache of what executors look up per group (a query's context, a batch's
processor): one read for the keys not seen yet, instead of one per execution.

Thread-safe (executors' lookups run in worker threads), bounded (past ``max_entries`` it is
emptied and refills on demand: simpler than eviction, and a group's keys are few), and,
with ``ttl_seconds``, forgetting an entry after that long (a renamed brand shows in answers
within the TTL). Whatever the loader returns is kept, ``None`` too (a deleted query is not
read again each group); a key it leaves out is looked up again next time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

FOREVER = float("inf")


class LookupCache(Generic[K, V]):
    def __init__(
        self,
        *,
        ttl_seconds: float = FOREVER,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get_many(self, keys: set[K], load: Callable[[set[K]], dict[K, V]]) -> dict[K, V]:
        """The values of ``keys``: cached ones, and ``load(missing)`` for the rest."""
        now = self._clock()
        found: dict[K, V] = {}
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None and entry[0] > now:
                    found[key] = entry[1]
        missing = keys - found.keys()
        if missing:
            loaded = load(missing)  # outside the lock: a read may take a while
            with self._lock:
                if len(self._entries) + len(loaded) > self._max:
                    self._entries.clear()
                for key, value in loaded.items():
                    self._entries[key] = (now + self._ttl, value)
            found.update(loaded)
        return found

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
