"""Execution-worker processes: who is alive, and how many groups each can run at once.

A worker registers when it starts, beats every ``JOBYARD_HEARTBEAT_SECONDS`` and leaves
when it stops. Its leases are good while it beats: the recovery sweep releases the leases
of a worker silent for ``JOBYARD_WORKER_DEAD_AFTER_SECONDS`` (a kill -9, a lost host), so
its executions run again within about that long plus one sweep, not after a long lease
expiry. The sum of live workers' slots sizes what dispatch keeps in the broker.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update

from shared.engine.counters import Executor
from shared.models import WorkerProcess
from shared.settings import get_settings


def new_worker_id() -> str:
    """``host:pid:random``: unique even when a pid is reused."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def register(connection: Executor, worker_id: str, slots: int, now: datetime) -> None:
    """Record a live worker process (again, if the sweep had presumed it dead)."""
    connection.execute(delete(WorkerProcess).where(WorkerProcess.id == worker_id))
    connection.execute(
        insert(WorkerProcess).values(
            id=worker_id,
            hostname=socket.gethostname()[:255],
            pid=os.getpid(),
            slots=slots,
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


def live_slots(connection: Executor, now: datetime) -> int:
    """How many groups the live workers can run at once."""
    return int(
        connection.execute(
            select(func.coalesce(func.sum(WorkerProcess.slots), 0)).where(
                WorkerProcess.heartbeat_at >= alive_since(now)
            )
        ).scalar_one()
    )


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
