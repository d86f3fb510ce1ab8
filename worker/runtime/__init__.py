"""The execution worker's runtime: one per process.

- an event loop thread, where executors hold every provider call in flight;
- a completer thread, writing outcomes in batches;
- a heartbeat thread, keeping this process's leases alive.

Celery's pool threads each run one group at a time (:func:`run_group`): claim it, hand it
to the loop, wait until every outcome is written, then top dispatch up. So a process runs
``slots`` groups of up to ``JOBYARD_GROUP_SIZE`` executions at once.
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


def current_runtime() -> Runtime:
    """This process's runtime (started with one slot if the worker did not start it)."""
    runtime = _runtime
    if runtime is None or runtime.pid != os.getpid():
        return start_runtime(1)
    return runtime


def stop_runtime() -> None:
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None and runtime.pid == os.getpid():
        if runtime.heartbeat is not None:
            runtime.heartbeat.stop()
        try:  # close the vendors' clients on the loop they belong to
            runtime.loop.submit(aclose_clients()).result(10)
        except Exception:
            log.warning("could not close the provider clients", exc_info=True)
        runtime.loop.stop()
