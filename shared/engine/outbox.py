"""The job-finished outbox: events written in the transaction that caused them.

The transaction that makes a job terminal (completed, failed, partial_failed, canceled)
writes one ``job.finished`` row per registered consumer, each known by name;
:func:`drain` hands each consumer its rows in batches (taken with
``FOR UPDATE SKIP LOCKED``, so drains may run concurrently) inside one transaction with the
consumer's own writes, then deletes them. A consumer that raises gets its rows back later,
with a growing delay; the others are not held up. A job type declares its consumers in its
spec, and the spec's registration registers them (:mod:`shared.engine.job_types`); every
process loads every installed job type when it starts, so each event is written for every
consumer, whichever process ends the job.

After a commit that wrote events, the worker publishes ``outbox.drain``; the recovery sweep
drains as well, so a lost message only delays a consumer.

A consumer that must act in the very transaction that caused the event (callbacks
per execution: written with the finish that ends the execution, not a hop later) registers
with :func:`register_in_transaction` instead: no row is written, the handler is called at
once with the caller's Session or Connection, and if it raises, so does the transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from shared.models import Execution, Job, OutboxEvent, utcnow

log = logging.getLogger(__name__)

JOB_FINISHED = "job.finished"
# A finished job's failed executions were made to run again (shared.engine.retry): the
# job is active again, and ends again with a new ``job.finished``.
JOB_RETRIED = "job.retried"
# An execution ended (success, or failed for good) in a job with a callback URL, for the
# job types that ask for it: webhooks per data point.
EXECUTION_FINISHED = "execution.finished"
MAX_BACKOFF_SECONDS = 3600.0

_execution_event_types: set[str] = set()


def report_executions_of(job_type: str) -> None:
    """Have the executions of ``job_type`` write ``execution.finished`` as each ends (only
    those job types pay for the extra statement on the finish path)."""
    _execution_event_types.add(job_type)


def reports_executions(job_type: str) -> bool:
    return job_type in _execution_event_types


@dataclass(frozen=True)
class Event:
    """What a consumer is handed."""

    id: int
    topic: str
    job_id: uuid.UUID | None
    organisation_id: uuid.UUID | None
    payload: dict[str, Any]
    attempts: int


Handler = Callable[[Session, Sequence[Event]], None]
# The caller's units of work, one per batch (``shared.db.session_scope``): a consumer's
# writes commit with the deletion of its events, and its after-commit actions run then.
Transactions = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True)
class Consumer:
    name: str
    topic: str
    handle: Handler
    batch_size: int = 100


_consumers: dict[str, Consumer] = {}
# Called in the transaction that emits their topic, with its Session or Connection.
_in_transaction: dict[str, tuple[str, Callable[[Any, Sequence[Event]], None]]] = {}


def register_consumer(name: str, topic: str, handle: Handler, *, batch_size: int = 100) -> None:
    """Register a consumer of ``topic`` (idempotent: a re-import registers it once)."""
    _consumers[name] = Consumer(name, topic, handle, batch_size)


def register_in_transaction(
    name: str, topic: str, handle: Callable[[Any, Sequence[Event]], None]
) -> None:
    """Have ``handle`` called with every ``topic`` event, in the transaction that emits it
    (idempotent: a re-import registers it once)."""
    _in_transaction[name] = (topic, handle)


def _handle_in_transaction(connection: Any, topic: str, events: Sequence[Event]) -> None:
    if events:
        for handler_topic, handle in list(_in_transaction.values()):
            if handler_topic == topic:
                handle(connection, events)


def _listened(topic: str) -> bool:
    return bool(consumers_of(topic)) or any(t == topic for t, _ in _in_transaction.values())


def consumers_of(topic: str) -> list[Consumer]:
    return [c for c in _consumers.values() if c.topic == topic]


def emit(
    connection: Any,
    topic: str,
    *,
    job_id: uuid.UUID | None,
    organisation_id: uuid.UUID | None,
    payload: dict[str, Any],
    now: datetime,
) -> int:
    """Write the event for every consumer of ``topic``, in the caller's transaction, and
    hand it to the in-transaction handlers."""
    _handle_in_transaction(
        connection, topic, [Event(0, topic, job_id, organisation_id, payload, 0)]
    )
    rows = [
        {
            "consumer": consumer.name,
            "topic": topic,
            "job_id": job_id,
            "organisation_id": organisation_id,
            "payload": payload,
            "attempts": 0,
            "available_at": now,
            "created_at": now,
        }
        for consumer in consumers_of(topic)
    ]
    if rows:
        connection.execute(insert(OutboxEvent), rows)
    return len(rows)


def emit_job_finished(
    connection: Any,
    job_id: uuid.UUID,
    organisation_id: uuid.UUID,
    job_type: str,
    status: str,
    now: datetime,
) -> int:
    """The ``job.finished`` event of a job that has just become terminal."""
    return emit(
        connection,
        JOB_FINISHED,
        job_id=job_id,
        organisation_id=organisation_id,
        payload={"status": status, "type": job_type},
        now=now,
    )


def emit_executions_finished(
    connection: Any, execution_ids: Sequence[uuid.UUID], now: datetime
) -> int:
    """``execution.finished`` for each of these just-ended executions whose job's type
    reports its executions (:func:`report_executions_of`), in the caller's transaction
    (before the job's own ``job.finished``, so consumers see a job's executions end before
    the job). Which of them matter (a batch with a callback URL, say) is for the type's
    consumers and handlers to decide."""
    consumers = consumers_of(EXECUTION_FINISHED)
    if not execution_ids or not _listened(EXECUTION_FINISHED):
        return 0
    ended = connection.execute(
        select(
            Execution.id, Execution.job_id, Job.organisation_id, Execution.status, Execution.error
        )
        .join(Job, Job.id == Execution.job_id)
        .where(
            Execution.id.in_(list(execution_ids)),
            Job.type.in_(sorted(_execution_event_types)),
        )
        .order_by(Execution.job_id, Execution.seq)
    ).all()
    _handle_in_transaction(
        connection,
        EXECUTION_FINISHED,
        [
            Event(
                0,
                EXECUTION_FINISHED,
                job_id,
                organisation_id,
                {"executionId": str(execution_id), "status": status, "error": error},
                0,
            )
            for execution_id, job_id, organisation_id, status, error in ended
        ],
    )
    rows = [
        {
            "consumer": consumer.name,
            "topic": EXECUTION_FINISHED,
            "job_id": job_id,
            "organisation_id": organisation_id,
            "payload": {"executionId": str(execution_id), "status": status, "error": error},
            "attempts": 0,
            "available_at": now,
            "created_at": now,
        }
        for execution_id, job_id, organisation_id, status, error in ended
        for consumer in consumers
    ]
    if rows:
        connection.execute(insert(OutboxEvent), rows)
    return len(rows)


def has_due_events(transactions: Transactions) -> bool:
    """Whether any consumer has events due now (after a drain that stopped at its cap)."""
    with transactions() as session:
        return (
            session.scalar(
                select(OutboxEvent.id).where(OutboxEvent.available_at <= utcnow()).limit(1)
            )
            is not None
        )


def drain(transactions: Transactions, *, max_batches: int = 50) -> dict[str, int]:
    """Hand every consumer its due events, a batch per unit of work of ``transactions``;
    returns how many each handled."""
    handled: dict[str, int] = {}
    for consumer in list(_consumers.values()):
        handled[consumer.name] = 0
        for _ in range(max_batches):
            count = _drain_batch(transactions, consumer)
            handled[consumer.name] += count
            if count < consumer.batch_size:
                break
    return handled


def _drain_batch(transactions: Transactions, consumer: Consumer) -> int:
    now = utcnow()
    claimed: list[int] = []
    try:
        with transactions() as session:
            rows = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.consumer == consumer.name, OutboxEvent.available_at <= now)
                .order_by(OutboxEvent.id)
                .limit(consumer.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            claimed = [row.id for row in rows]
            events = [
                Event(r.id, r.topic, r.job_id, r.organisation_id, dict(r.payload), r.attempts)
                for r in rows
            ]
            consumer.handle(session, events)
            session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(claimed)))
        return len(claimed)
    except Exception as exc:
        if not claimed:
            raise
        log.exception("outbox consumer %s failed on %d event(s)", consumer.name, len(claimed))
        _postpone(transactions, claimed, repr(exc)[:1000])
        return 0


def _postpone(transactions: Transactions, ids: list[int], error: str) -> None:
    """Give failed events back with an exponential delay (1 s, 2 s, ... up to an hour)."""
    now = utcnow()
    with transactions() as session:
        for row in session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids))):
            delay = min(MAX_BACKOFF_SECONDS, 2.0**row.attempts)
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == row.id)
                .values(
                    attempts=row.attempts + 1,
                    available_at=now + timedelta(seconds=delay),
                    last_error=error,
                )
            )
