"""Execution-worker processes: who is alive, and how many executions each holds in flight.

A worker registers when it starts, beats every ``JOBYARD_HEARTBEAT_SECONDS`` and leaves
when it stops. Its leases are good while it beats: the recovery sweep releases the leases
of a worker silent for ``JOBYARD_WORKER_DEAD_AFTER_SECONDS`` (a kill -9, a lost host), so
its executions run again within about that long plus one sweep, not after a long lease
expiry. The live workers' capacities size what dispatch keeps in the broker; a worker
that stops warmly hands its leases back itself (:func:`hand_back_leases`).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update

from shared.engine.counters import Executor
from shared.engine.finish import attempt_given_back
from shared.models import ACTIVE_EXECUTION_STATUSES, Execution, WorkerProcess, utcnow
from shared.settings import get_settings


def new_worker_id() -> str:
    """``host:pid:random``: unique even when a pid is reused."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def register(connection: Executor, worker_id: str, capacity: int, now: datetime) -> None:
    """Record a live worker process holding up to ``capacity`` executions in flight (0:
    it runs none, a dispatcher); again, if the sweep had presumed it dead."""
    connection.execute(delete(WorkerProcess).where(WorkerProcess.id == worker_id))
    connection.execute(
        insert(WorkerProcess).values(
            id=worker_id,
            hostname=socket.gethostname()[:255],
            pid=os.getpid(),
            capacity=capacity,
            started_at=now,
            heartbeat_at=now,
        )
    )


def beat(connection: Executor, worker_id: str, now: datetime) -> bool:
    """Renew the heartbeat; False when the row is gone (the sweep presumed us dead)."""
    result = connection.execute(
        update(WorkerProcess).where(WorkerProcess.id == worker_id).values(heartbeat_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def unregister(connection: Executor, worker_id: str) -> None:
    connection.execute(delete(WorkerProcess).where(WorkerProcess.id == worker_id))


def alive_since(now: datetime) -> datetime:
    """The oldest heartbeat of a live worker at ``now``."""
    return now - timedelta(seconds=get_settings().worker_dead_after_seconds)


def live_capacities(connection: Executor, now: datetime) -> list[int]:
    """The capacity of each live execution worker (dispatchers, with none, left out)."""
    return [
        int(capacity)
        for capacity in connection.execute(
            select(WorkerProcess.capacity).where(
                WorkerProcess.heartbeat_at >= alive_since(now), WorkerProcess.capacity > 0
            )
        ).scalars()
    ]


def hand_back_leases(connection: Executor, worker_id: str) -> int:
    """Release every lease ``worker_id`` holds, giving the attempt back (the worker is
    stopping; the call did not fail): dispatch hands the executions out again at once.
    An outcome of theirs reported later finds its lease gone and is not counted."""
    result = connection.execute(
        update(Execution)
        .where(
            Execution.lease_owner == worker_id,
            Execution.lease_token.is_not(None),
            Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
        )
        .values(
            attempts=attempt_given_back(connection),
            lease_token=None,
            lease_owner=None,
            lease_expires_at=None,
            dispatched_at=None,
            updated_at=utcnow(),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def dead_workers(connection: Executor, now: datetime) -> dict[str, datetime]:
    """Workers whose heartbeat stopped, with their last heartbeat."""
    return {
        row.id: row.heartbeat_at
        for row in connection.execute(
            select(WorkerProcess.id, WorkerProcess.heartbeat_at).where(
                WorkerProcess.heartbeat_at < alive_since(now)
            )
        )
    }


def forget(connection: Executor, worker_ids: list[str]) -> None:
    if worker_ids:
        connection.execute(delete(WorkerProcess).where(WorkerProcess.id.in_(worker_ids)))
