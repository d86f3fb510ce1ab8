"""The execution worker's runtime: one per process.

- an event loop thread, where executors hold every provider call in flight;
- a completer thread, writing outcomes in batches;
- a heartbeat thread, keeping this process's leases alive.

Celery's pool threads each run one group at a time (:func:`run_group`): claim it, hand it
to the loop, wait until every outcome is written, then top dispatch up. So a process runs
``slots`` groups of up to ``JOBYARD_GROUP_SIZE`` executions at once.

A worker process that runs no executions (the dispatcher: fan-outs, the sweep, webhooks)
beats too, with no slots (:func:`start_presence`): a fan-out it was writing when it died
is taken over by the sweep within the dead-worker window.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from shared.engine.workers import new_worker_id
from worker.providers.common import aclose_clients
from worker.runtime.completer import Completer
from worker.runtime.heartbeat import Heartbeat
from worker.runtime.loop import EventLoopThread

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    worker_id: str
    pid: int
    loop: EventLoopThread
    completer: Completer
    heartbeat: Heartbeat | None


_lock = threading.Lock()
_runtime: Runtime | None = None
_presence: Heartbeat | None = None


def start_runtime(slots: int) -> Runtime:
    """Start this process's runtime and register it with ``slots`` group slots."""
    global _runtime
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid():
            worker_id = new_worker_id()
            _runtime = Runtime(
                worker_id=worker_id,
                pid=os.getpid(),
                loop=EventLoopThread(),
                completer=Completer(),
                heartbeat=Heartbeat(worker_id, slots),
            )
            log.info("runtime %s started with %d slots", worker_id, slots)
        return _runtime


def start_presence() -> str:
    """Register this process with no execution slots and keep it beating; its worker id."""
    global _presence
    with _lock:
        if _presence is None:
            _presence = Heartbeat(new_worker_id(), 0)
            log.info("worker %s present (no execution slots)", _presence.worker_id)
        return _presence.worker_id


def this_worker_id() -> str | None:
    """The worker id this process beats under (None before it registered)."""
    if _runtime is not None and _runtime.pid == os.getpid():
        return _runtime.worker_id
    return _presence.worker_id if _presence is not None else None


def current_runtime() -> Runtime:
    """This process's runtime (started with one slot if the worker did not start it)."""
    runtime = _runtime
    if runtime is None or runtime.pid != os.getpid():
        return start_runtime(1)
    return runtime


def stop_runtime() -> None:
    global _runtime, _presence
    with _lock:
        runtime, _runtime = _runtime, None
        presence, _presence = _presence, None
    if presence is not None:
        presence.stop()
    if runtime is not None and runtime.pid == os.getpid():
        if runtime.heartbeat is not None:
            runtime.heartbeat.stop()
        try:  # close the vendors' clients on the loop they belong to
            runtime.loop.submit(aclose_clients()).result(10)
        except Exception:
            log.warning("could not close the provider clients", exc_info=True)
        runtime.loop.stop()
