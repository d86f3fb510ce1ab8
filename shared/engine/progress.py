"""Live progress: a job's counters and status, published on Redis after each commit
that moved them, for ``GET /api/jobs/{id}/events`` (server-sent events).

Whatever moves a job's counters (:func:`shared.engine.counters.move_counters`: the
worker's batch completer, recovery, canceling an execution; and canceling a job) notes
the job's new counters on the unit of work it runs in (:func:`shared.db.unit_of`), taken
from the ``RETURNING`` of the UPDATE that moved them, so no extra read. Once that
transaction has committed, the notes are published: one ``PUBLISH`` per job per
transaction, all in one pipelined round trip. A rolled-back transaction publishes nothing. Streams subscribe to their job's channel; nothing polls.

Pub/sub is at-most-once: a publish lost while Redis was away is made good by the stream,
which re-reads the job row once per heartbeat.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared.db import unit_of
from shared.models import TERMINAL_JOB_STATUSES, Job
from shared.settings import get_settings

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "jobyard:job-progress:"
NOTES_KEY = "jobyard.progress"  # in the unit of work's values: {job_id: Snapshot}


def channel(job_id: uuid.UUID) -> str:
    return f"{CHANNEL_PREFIX}{job_id}"


@dataclass(frozen=True)
class Snapshot:
    """A job's counters and status at one commit, in the engine's own names (each API
    family renders them in its own)."""

    id: str
    status: str
    total: int
    pending: int
    retrying: int
    success: int
    failed: int

    @property
    def done(self) -> int:
        return self.success + self.failed

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    @classmethod
    def of(
        cls,
        job_id: uuid.UUID,
        status: str,
        total: int,
        pending: int,
        retrying: int,
        success: int,
        failed: int,
    ) -> Snapshot:
        return cls(str(job_id), str(status), total, pending, retrying, success, failed)


# The columns a counter move returns, in Snapshot.of's order (after the job id).
SNAPSHOT_COLUMNS = (Job.status, Job.total, Job.pending, Job.retrying, Job.success, Job.failed)


def read(session: Session, job_id: uuid.UUID) -> Snapshot | None:
    """The job's current snapshot (one indexed read), or None when it is gone."""
    row = session.execute(select(*SNAPSHOT_COLUMNS).where(Job.id == job_id)).one_or_none()
    return None if row is None else Snapshot.of(job_id, *row)


def note(executor: Session | Connection, snapshot: Snapshot) -> None:
    """Publish ``snapshot`` once the executor's unit of work commits (the last note of a
    job in one transaction wins; :func:`shared.db.unit_of`). A bare Session or Connection
    outside one publishes nothing: the streams' heartbeat re-read catches up."""
    work = unit_of(executor)
    if work is None:
        return
    notes: dict[str, Snapshot] | None = work.values.get(NOTES_KEY)
    if notes is None:
        notes = work.values[NOTES_KEY] = {}
        work.after_commit(lambda: publish(notes.values()))
    notes[snapshot.id] = snapshot


_clients: dict[tuple[int, str], redis.Redis] = {}
_clients_lock = threading.Lock()


def redis_client() -> redis.Redis:
    """This process's client for progress (a fresh pool after a fork)."""
    url = get_settings().redis_url
    key = (os.getpid(), url)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            # Short timeouts: a publish must never hold a finishing batch up for long.
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            _clients[key] = client
        return client


def publish(snapshots: Iterable[Snapshot]) -> None:
    """One PUBLISH per snapshot, pipelined in one round trip; failures are logged only
    (the work is committed; streams re-read the row at their next heartbeat)."""
    batch = list(snapshots)
    if not batch:
        return
    try:
        pipe = redis_client().pipeline(transaction=False)
        for snapshot in batch:
            pipe.publish(channel(uuid.UUID(snapshot.id)), json.dumps(snapshot.as_dict()))
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("progress: %d job updates not published: %s", len(batch), exc)
