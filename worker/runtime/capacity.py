"""A worker process's in-flight capacity, counted in executions, and its refills.

A group's task reserves room for its executions before it claims them (so nothing is
leased that cannot start at once) and returns as soon as they are on the event loop;
each execution gives its place back when its outcome is reported. A slow call holds one
place, never its group's: the process stays full whatever the spread of latencies.

The claimers (Celery's pool threads, each holding one message) wait here for room;
when a group's worth is free one of them claims its group at once, and dispatch is
topped up after claims (debounced, :class:`Refiller`), so the broker always holds the
next groups and no worker waits for a group to drain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError

from shared.metrics import WORKER_IN_FLIGHT

log = logging.getLogger(__name__)


class CapacityClosed(Exception):
    """The process is shutting down: it claims nothing more."""


class Capacity:
    """At most ``limit`` executions in flight in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_flight = 0
        self._closed = False
        self._changed = threading.Condition()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def reserve(self, count: int) -> int:
        """Wait until ``count`` executions fit (a group larger than the whole capacity
        waits for an idle process), take their places, and return how many were taken.
        Raises CapacityClosed once the process is shutting down."""
        count = min(count, self.limit)
        with self._changed:
            while not self._closed and self._in_flight + count > self.limit:
                self._changed.wait()
            if self._closed:
                raise CapacityClosed()
            self._in_flight += count
            WORKER_IN_FLIGHT.set(self._in_flight)
            return count

    def release(self, count: int = 1) -> None:
        """Give ``count`` places back (an execution's outcome was reported, or a reserved
        place was not claimed)."""
        with self._changed:
            if count > self._in_flight:  # a place given back twice: a bug, not a free slot
                raise ValueError(f"releasing {count} of {self._in_flight} places in flight")
            self._in_flight -= count
            WORKER_IN_FLIGHT.set(self._in_flight)
            self._changed.notify_all()

    def close(self) -> None:
        """Refuse every reservation from now on; claimers waiting for room give up."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for nothing to be in flight."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True


class Refiller:
    """Tops dispatch up after claims, at most every ``interval`` seconds, in a thread of
    its own (the claimers never wait for it)."""

    def __init__(self, fill: Callable[[], int], interval: float) -> None:
        self._fill = fill
        self.interval = interval
        self._wanted = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobyard-refiller", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a fill (many requests before it runs make one fill)."""
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopped.is_set():
                return
            self._wanted.clear()
            try:
                self._fill()
            except DBAPIError as exc:  # the next claim or the sweep fills instead
                log.warning("refill: dispatch could not be topped up (%s)", exc)
            except Exception:  # never let the thread die: refills would stop
                log.exception("refill: dispatch failed")
            self._stopped.wait(self.interval)

    def stop(self) -> None:
        self._stopped.set()
        self._wanted.set()
        self._thread.join(5)
