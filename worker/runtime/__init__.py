"""The execution worker's runtime: one per process.

- an event loop thread, where executors hold every provider call in flight;
- a completer thread, writing outcomes in batches;
- a heartbeat thread, keeping this process's leases alive and telling dispatch its
  capacity;
- the capacity (:mod:`worker.runtime.capacity`): at most ``JOBYARD_WORKER_CAPACITY``
  executions in flight, each giving its place back when its outcome is reported, and a
  refiller that tops dispatch up after claims.

Celery's pool threads are claimers (:func:`worker.runtime.groups.run_group`): each
takes one group message, waits for room, claims the group, hands it to the loop and
returns for the next one without waiting for the group to end.

A warm shutdown (SIGTERM) stops claiming at once (:func:`stop_claiming`), lets the calls
in flight end for up to ``JOBYARD_WORKER_DRAIN_SECONDS``, writes their outcomes, then
hands back what still runs (:func:`stop_runtime`).

A worker process that runs no executions (the dispatcher: fan-outs, the sweep)
beats too, with no capacity (:func:`start_presence`): a fan-out it was writing when it
died is taken over by the sweep within the dead-worker window.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from shared.db import connection_scope
from shared.engine import dispatch
from shared.engine.workers import hand_back_leases, new_worker_id
from shared.settings import get_settings
from worker.providers.common import aclose_clients
from worker.runtime.capacity import Capacity, Refiller
from worker.runtime.completer import GIVE_UP_AFTER_SECONDS, Completer
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
    capacity: Capacity
    refiller: Refiller


_lock = threading.Lock()
_runtime: Runtime | None = None
_presence: Heartbeat | None = None


def start_runtime(capacity: int) -> Runtime:
    """Start this process's runtime and register it with ``capacity`` executions in
    flight at most; then top dispatch up for it (a worker that joins gets work at once)."""
    global _runtime
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid():
            worker_id = new_worker_id()
            _runtime = Runtime(
                worker_id=worker_id,
                pid=os.getpid(),
                loop=EventLoopThread(),
                completer=Completer(),
                heartbeat=Heartbeat(worker_id, capacity),
                capacity=Capacity(capacity),
                refiller=Refiller(dispatch.fill, get_settings().refill_interval_seconds),
            )
            _runtime.refiller.request()
            log.info("runtime %s started: %d executions in flight at most", worker_id, capacity)
        return _runtime


def start_presence() -> str:
    """Register this process with no capacity and keep it beating; its worker id."""
    global _presence
    with _lock:
        if _presence is None:
            _presence = Heartbeat(new_worker_id(), 0)
            log.info("worker %s present (runs no executions)", _presence.worker_id)
        return _presence.worker_id


def this_worker_id() -> str | None:
    """The worker id this process beats under (None before it registered)."""
    if _runtime is not None and _runtime.pid == os.getpid():
        return _runtime.worker_id
    return _presence.worker_id if _presence is not None else None


def current_runtime() -> Runtime:
    """This process's runtime (started with the configured capacity if the worker did
    not start it)."""
    runtime = _runtime
    if runtime is None or runtime.pid != os.getpid():
        return start_runtime(get_settings().worker_capacity)
    return runtime


def stop_claiming() -> None:
    """The first step of a warm shutdown: claimers waiting for room give their messages'
    executions back to dispatch, and nothing more is claimed."""
    runtime = _runtime
    if runtime is not None and runtime.pid == os.getpid():
        runtime.capacity.close()


def stop_runtime() -> None:
    global _runtime, _presence
    with _lock:
        runtime, _runtime = _runtime, None
        presence, _presence = _presence, None
    if presence is not None:
        presence.stop()
    if runtime is not None and runtime.pid == os.getpid():
        drain(runtime, get_settings().worker_drain_seconds)
        runtime.refiller.stop()
        if runtime.heartbeat is not None:
            runtime.heartbeat.stop()
        try:  # what this worker handed back goes to the other workers now
            dispatch.fill()
        except DBAPIError:
            log.warning("could not top dispatch up after handing work back")
        try:  # close the vendors' clients on the loop they belong to
            runtime.loop.submit(aclose_clients()).result(10)
        except Exception:
            log.warning("could not close the provider clients", exc_info=True)
        runtime.loop.stop()


def drain(runtime: Runtime, seconds: float) -> None:
    """Let the calls in flight end for up to ``seconds``, write their outcomes, then hand
    back the executions still running (their leases released, their attempt not spent),
    so that another worker runs them at once rather than after the dead-worker window."""
    runtime.capacity.close()
    ended = runtime.capacity.wait_idle(seconds)
    runtime.completer.wait_idle(GIVE_UP_AFTER_SECONDS)
    try:
        with connection_scope() as connection:
            handed_back = hand_back_leases(connection, runtime.worker_id)
    except DBAPIError as exc:  # the sweep releases them when our heartbeat stops
        log.warning("shutdown: could not hand leases back (%s)", exc)
        return
    log.info(
        "shutdown: %s; %d executions still running handed back",
        "every call in flight ended" if ended else f"calls still running after {seconds:g} s",
        handed_back,
    )
