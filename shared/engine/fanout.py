"""Fan-out: write an accepted job's executions, chunk by chunk, and start dispatching them.

The job type's planner yields the items; each chunk is one transaction (an INSERT that
skips rows already there, so a re-run or a concurrent duplicate fan-out writes nothing
twice), taken under the job's lock, and stops at once when the job has been canceled.
Nothing is published per execution: after each chunk, :func:`dispatch.fill` hands the
broker as much as the workers can take, fairly across jobs.

A job whose items come with its request (a batch's inline inputs) has its first
executions written in the transaction that accepts it (:func:`fan_out_at_accept`), so
that they can be read and canceled the moment the request is answered; when those are
all of them, its fan-out message only starts dispatching them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from shared import logs, tracing
from shared.db import connection_scope, dialect_name, new_session, session_scope, unit_of_work
from shared.engine import dispatch, outbox
from shared.engine.counters import Executor
from shared.engine.job_types import PlanFailed, PlannedItem, planner_for, preparer_for
from shared.engine.locks import lock_job
from shared.engine.status import status_after_start
from shared.messaging import publisher
from shared.models import (
    TERMINAL_JOB_STATUSES,
    Execution,
    ExecutionStatus,
    Job,
    JobStatus,
    utcnow,
)
from shared.settings import get_settings

log = logging.getLogger(__name__)

EXECUTIONS: Table = Execution.__table__  # type: ignore[assignment]


def execution_id_for(job_id: uuid.UUID, item_key: str) -> uuid.UUID:
    """A deterministic id, so a repeated fan-out names the same executions."""
    return uuid.uuid5(job_id, item_key)


def execution_id_hexes(job_id: uuid.UUID, item_keys: Iterable[str]) -> list[str]:
    """:func:`execution_id_for` of each key, as 32 hex digits (what COPY sends): the same
    UUIDv5 computed without a UUID object per row, which cost a fifth of a fan-out."""
    namespace = job_id.bytes
    hexes = []
    for key in item_keys:
        digest = bytearray(hashlib.sha1(namespace + key.encode()).digest()[:16])
        digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
        digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
        hexes.append(digest.hex())
    return hexes


@dataclass(frozen=True)
class FanOutPlan:
    """Whether a job still needs fanning out (messages can be duplicated)."""

    should_run: bool
    reason: str = ""
    organisation_id: uuid.UUID | None = None
    # Its executions are all written (at accept, or by an earlier fan-out): the message
    # only has to start dispatching them.
    written: bool = False


def check_fan_out(session: Any, job_id: uuid.UUID) -> FanOutPlan:
    job = session.get(Job, job_id)
    if job is None:
        return FanOutPlan(False, "job does not exist")
    if job.fanned_out_at is not None:
        return FanOutPlan(False, "already fanned out", job.organisation_id, written=True)
    if job.canceled_at is not None:
        return FanOutPlan(False, "canceled", job.organisation_id)
    if job.parked:
        return FanOutPlan(False, "parked", job.organisation_id)
    return FanOutPlan(True, organisation_id=job.organisation_id)


def fan_out_job(job_id: uuid.UUID, owner: str | None = None) -> int:
    """Write the job's executions; returns how many this call wrote (0 when another
    fan-out, or an earlier one, had written them). ``owner``: this process's worker id
    (its heartbeat row), recorded with each chunk so that the sweep takes the fan-out
    over if the process dies."""
    with session_scope() as session:
        plan = check_fan_out(session, job_id)
        traceparent = tracing.current_traceparent() if plan.should_run else None
        if traceparent is not None:  # its groups are published as this fan-out's children
            session.execute(update(Job).where(Job.id == job_id).values(traceparent=traceparent))
    with logs.bound(job_id=job_id, organisation_id=plan.organisation_id):
        return _fan_out(job_id, plan, owner)


def _fan_out(job_id: uuid.UUID, plan: FanOutPlan, owner: str | None) -> int:
    if not plan.should_run:
        log.info("fan-out of job %s skipped: %s", job_id, plan.reason)
        if plan.written:  # fanned out at accept: this message is what starts its work
            dispatch.fill()
        return 0
    if not prepare(job_id):
        return 0
    chunk_size = get_settings().fanout_chunk_size
    written = 0
    with new_session() as reader:
        job = reader.get(Job, job_id)
        assert job is not None
        planned = planner_for(job.type)(reader, job)
        for seq_start, chunk in _chunks(planned, chunk_size):
            # End the planner's read transaction between chunks: a snapshot held for the
            # whole fan-out would keep PostgreSQL from pruning the index entries that
            # every claim and finish leaves behind (they pile up, and each dispatch scan
            # walks them all). Loaded objects stay usable (expire_on_commit is off).
            reader.commit()
            with connection_scope() as connection:
                inserted = write_chunk(connection, job_id, seq_start, chunk, owner)
            if inserted is None:
                log.info("fan-out of job %s stopped: the job was canceled", job_id)
                break
            written += inserted
            # The first chunk starts work while the rest is written; but a fill queues
            # behind every worker's (each finished group fills): measured at 0 ms, that
            # wait was 40 % of a 100,000-execution fan-out. So it only tries here, and
            # waits its turn once the last chunk is in.
            dispatch.fill(wait=False)
    with session_scope() as session:
        now = utcnow()
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.fanned_out_at.is_(None))
            .values(fanned_out_at=now, updated_at=now)
        )
        empty = session.scalar(select(Job.total).where(Job.id == job_id)) == 0
    if empty:  # planned to nothing (a sync run that found no new rows): it is done
        end_without_executions(job_id, JobStatus.COMPLETED.value, None)
    else:
        dispatch.fill()
    log.info("fan-out of job %s wrote %d executions", job_id, written)
    return written


def fan_out_at_accept(
    connection: Executor, job_id: uuid.UUID, planned: Iterable[PlannedItem]
) -> int:
    """Write the first ``JOBYARD_EXECUTIONS_WRITTEN_AT_ACCEPT`` executions of a job in the
    caller's transaction, the one that accepts it: they can be read and canceled the
    moment the request is answered. Returns how many were written.

    When that was all of them, the job is fanned out: its fan-out message only starts
    dispatching. Otherwise the fan-out writes the rest as usual (the rows written here
    are skipped, as in any repeated fan-out), so a request never writes more than that
    bound, however big its job.
    """
    iterator = iter(planned)
    first = list(itertools.islice(iterator, get_settings().executions_written_at_accept))
    more = next(iterator, None) is not None
    written = 0
    for seq_start, chunk in _chunks(first, get_settings().fanout_chunk_size):
        written += write_chunk(connection, job_id, seq_start, chunk) or 0
    if not more:
        now = utcnow()
        connection.execute(
            update(Job).where(Job.id == job_id).values(fanned_out_at=now, updated_at=now)
        )
    return written


def prepare(job_id: uuid.UUID) -> bool:
    """Run the job type's preparer, if it has one; False when the job failed there."""
    with session_scope() as session:
        job_type = session.scalar(select(Job.type).where(Job.id == job_id))
    preparer = preparer_for(job_type) if job_type is not None else None
    if preparer is None:
        return True
    try:
        preparer(job_id)
    except PlanFailed as exc:
        log.info("job %s cannot be planned: %s", job_id, exc)
        fail_unplanned_job(job_id, str(exc))
        return False
    return True


def fail_unplanned_job(job_id: uuid.UUID, reason: str) -> None:
    """End a job that could not be planned: failed, with ``reason``, no executions."""
    end_without_executions(job_id, JobStatus.FAILED.value, reason)


def end_without_executions(job_id: uuid.UUID, status: str, reason: str | None) -> None:
    """End a job that has no executions with ``status``, its ``job.finished`` event in the
    same transaction (a job that has executions, or has ended, is left alone)."""
    with unit_of_work() as work:
        session = work.session
        lock_job(session, job_id)
        job = session.get(Job, job_id, with_for_update={"of": Job})
        if job is None or job.status in TERMINAL_JOB_STATUSES:
            return
        if status == JobStatus.FAILED.value and job.fanned_out_at is not None:
            return
        if session.scalar(select(func.count()).where(Execution.job_id == job_id)):
            return
        now = utcnow()
        job.total = job.pending = job.retrying = job.success = job.failed = 0
        job.status = status
        job.error = reason
        job.fanned_out_at = job.finished_at = job.updated_at = now
        if outbox.emit_job_finished(session, job_id, job.organisation_id, job.type, status, now):
            work.after_commit(publisher.publish_outbox_drain)  # its consumers run now


def _chunks(planned: Iterable[PlannedItem], size: int) -> Iterator[tuple[int, list[PlannedItem]]]:
    iterator = iter(planned)
    seq = 0
    while chunk := list(itertools.islice(iterator, size)):
        yield seq, chunk
        seq += len(chunk)


def write_chunk(
    connection: Executor,
    job_id: uuid.UUID,
    seq_start: int,
    chunk: list[PlannedItem],
    owner: str | None = None,
) -> int | None:
    """Insert one chunk under the job's lock; None (nothing written) once it is canceled.

    Returns how many rows were new. The job leaves ``pending`` for ``processing`` with
    its first chunk; its ``dispatched_at`` records the fan-out's progress and
    ``fan_out_owner`` the process writing it (the recovery sweep publishes a fan-out
    again when that process dies, or when it stops moving).
    """
    lock_job(connection, job_id)
    canceled = connection.execute(
        select(Job.canceled_at).where(Job.id == job_id)
    ).scalar_one_or_none()
    if canceled is not None:
        return None
    now = utcnow()
    if dialect_name(connection) == "postgresql":
        inserted = _insert_postgresql(connection, job_id, seq_start, chunk, now)
    else:
        inserted = _insert_each(connection, job_id, seq_start, chunk, now)
    connection.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(dispatched_at=now, updated_at=now, fan_out_owner=owner)
    )
    connection.execute(
        update(Job)
        .where(Job.id == job_id, Job.started_at.is_(None))
        .values(started_at=now, status=status_after_start())
    )
    return inserted


# The chunk is streamed with COPY into a staging table of this connection (emptied at
# commit), then moved with one INSERT that skips the rows already there: ON CONFLICT makes a
# repeated (or concurrent) fan-out write nothing twice. COPY sends the rows as text, built
# in C by psycopg, where a JSON document of the chunk cost as much Python time again as
# the rows themselves (py-spy: 100,000 rows in 4.0 s, JSON and its row dicts a quarter).
_CREATE_STAGING = """
    CREATE TEMPORARY TABLE IF NOT EXISTS fanout_staging (
        id uuid NOT NULL, seq integer NOT NULL, item_key text NOT NULL,
        item jsonb NOT NULL, parked boolean NOT NULL
    ) ON COMMIT DELETE ROWS
"""
_COPY_STAGING = "COPY fanout_staging (id, seq, item_key, item, parked) FROM STDIN"
_INSERT_FROM_STAGING = text(
    """
    INSERT INTO executions (id, job_id, seq, item_key, item, parked, status, attempts, cost,
                            created_at, updated_at)
    SELECT s.id, :job_id, s.seq, s.item_key, s.item, s.parked, 'pending', 0, 0, :now, :now
    FROM fanout_staging AS s
    ON CONFLICT (id) DO NOTHING
    """
)


def _insert_postgresql(
    connection: Executor,
    job_id: uuid.UUID,
    seq_start: int,
    chunk: list[PlannedItem],
    now: Any,
) -> int:
    ids = execution_id_hexes(job_id, (p.key for p in chunk))
    driver = _driver_connection(connection)
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with driver.cursor() as cursor:
        cursor.execute(_CREATE_STAGING)
        with cursor.copy(_COPY_STAGING) as copy:
            for seq, (execution_id, planned) in enumerate(zip(ids, chunk, strict=True), seq_start):
                copy.write_row(
                    (execution_id, seq, planned.key, encode(planned.item), planned.parked)
                )
    result = connection.execute(_INSERT_FROM_STAGING, {"job_id": job_id, "now": now})
    return int(result.rowcount)  # type: ignore[attr-defined]


def _driver_connection(connection: Executor) -> Any:
    """The psycopg connection under ``connection``, in the same transaction."""
    if isinstance(connection, Session):
        connection = connection.connection()
    return connection.connection.driver_connection


def _insert_each(
    connection: Executor,
    job_id: uuid.UUID,
    seq_start: int,
    chunk: list[PlannedItem],
    now: Any,
) -> int:
    rows = [
        {
            "id": execution_id_for(job_id, p.key),
            "job_id": job_id,
            "seq": seq_start + offset,
            "item_key": p.key,
            "item": p.item,
            "parked": p.parked,
            "status": ExecutionStatus.PENDING.value,
            "attempts": 0,
            "cost": 0.0,
            "created_at": now,
            "updated_at": now,
        }
        for offset, p in enumerate(chunk)
    ]
    result = connection.execute(sqlite.insert(EXECUTIONS).on_conflict_do_nothing(), rows)
    return int(result.rowcount)  # type: ignore[attr-defined]
