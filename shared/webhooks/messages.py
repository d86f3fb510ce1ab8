"""Webhook messages: what to send where, and their delivery log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    and_,
    exists,
    false,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, aliased

from shared.engine.outbox import EXECUTION_FINISHED
from shared.errors import Conflict, NotFound
from shared.models import OutboxEvent, utcnow
from shared.paging import keyset_page
from shared.settings import get_settings
from shared.webhooks.kicks import kick_after_commit
from shared.webhooks.models import WebhookDelivery, WebhookMessage
from shared.webhooks.receivers import origin_of

# A sender takes a receiver's messages up to this many times its bound of requests in
# flight: the next ones wait their turn in the sender, logged, while the first are sent.
# An attempt therefore ends within this many delivery timeouts of being logged (its turn,
# then its request); this much more covers writing the outcome. An attempt older than
# that without an outcome is one whose sender stopped (killed, or its machine lost).
TAKEN_AHEAD = 2
RECORDING_GRACE = timedelta(seconds=5)
UNKNOWN_OUTCOME = (
    "unknown: the sender stopped before the answer was recorded "
    "(the receiver may have got the request)"
)
LOG_CURSOR_SORT = "created"  # the log's one order: (created_at, id), oldest first


class AttemptOutcome(StrEnum):
    ANSWERED = "answered"  # the receiver answered: statusCode (and the start of the body)
    ERROR = "error"  # no answer: a timeout, a refused connection or address (error)
    SENDING = "sending"  # under way: its outcome is not written yet
    UNKNOWN = "unknown"  # the sender stopped before writing the outcome


def attempt_outcome(attempt: WebhookDelivery, now: datetime) -> AttemptOutcome:
    """What is known of an attempt ``now``: an attempt is logged before its request leaves
    and completed after it, so one never completed is under way or lost with its sender."""
    if attempt.completed_at is not None:
        return AttemptOutcome.ANSWERED if attempt.status_code is not None else AttemptOutcome.ERROR
    return (
        AttemptOutcome.UNKNOWN
        if now - attempt.attempted_at > outcome_overdue()
        else AttemptOutcome.SENDING
    )


def outcome_overdue() -> timedelta:
    """How long after its attempt is logged its outcome is written at the latest, while
    its sender runs."""
    return timedelta(seconds=get_settings().webhook_timeout_seconds * TAKEN_AHEAD) + RECORDING_GRACE


def attempt_error(attempt: WebhookDelivery, now: datetime) -> str | None:
    """The attempt's error, or why its outcome is unknown."""
    if attempt_outcome(attempt, now) is AttemptOutcome.UNKNOWN:
        return UNKNOWN_OUTCOME
    return attempt.error


@dataclass(frozen=True)
class MessageLog:
    """A message and every attempt to deliver it, in order (1, 2, ...)."""

    message: WebhookMessage
    attempts: list[WebhookDelivery]


@dataclass(frozen=True)
class MessageLogPage:
    """One page of a delivery log, and the cursor to the next page (None at the end)."""

    items: list[MessageLog]
    next_cursor: str | None


class MessageState:
    SENDING = "sending"  # to be tried (again) at next_attempt_at
    DELIVERED = "delivered"  # a 2xx
    FAILED = "failed"  # every attempt of the schedule failed
    GONE = "gone"  # the receiver answered 410: no more attempts


@dataclass(frozen=True)
class NewMessage:
    """A message to write: what to send where, about which job (and which of its
    executions, if any). A message that ``closes_job`` is sent only after every message
    about the job's executions is settled, those not written yet included."""

    organisation_id: uuid.UUID
    job_id: uuid.UUID
    execution_id: uuid.UUID | None
    event: str
    url: str
    payload: dict[str, Any]
    closes_job: bool = False


def enqueue_all(
    executor: Session | Connection, messages: Sequence[NewMessage], now: datetime
) -> list[WebhookMessage]:
    """Messages to send at once, in the caller's transaction (the one that ended the
    executions, or any other), in order: a message about an execution follows the last
    one written about it, and is not sent before that one is settled. On a Session they
    are added to it; on a Connection (the worker's finish) inserted in one statement.
    Once the transaction commits, the senders are woken."""
    tails = _chain_tails(executor, {m.execution_id for m in messages if m.execution_id})
    written = []
    for new in messages:
        message = WebhookMessage(
            id=uuid.uuid4(),
            organisation_id=new.organisation_id,
            job_id=new.job_id,
            execution_id=new.execution_id,
            follows_id=tails.get(new.execution_id) if new.execution_id else None,
            closes_job=new.closes_job,
            event=new.event,
            url=new.url,
            receiver=origin_of(new.url),
            payload=new.payload,
            state=MessageState.SENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        if new.execution_id:
            tails[new.execution_id] = message.id
        written.append(message)
    if not written:
        return written
    if isinstance(executor, Session):
        executor.add_all(written)
    else:
        columns = [c.key for c in WebhookMessage.__table__.columns]
        executor.execute(
            insert(WebhookMessage), [{c: getattr(m, c) for c in columns} for m in written]
        )
    kick_after_commit(executor)
    return written


def enqueue(
    session: Session,
    *,
    organisation_id: uuid.UUID,
    job_id: uuid.UUID,
    execution_id: uuid.UUID | None,
    event: str,
    url: str,
    payload: dict[str, Any],
    now: datetime,
    closes_job: bool = False,
) -> WebhookMessage:
    """One message to send at once, in the caller's transaction (see :func:`enqueue_all`)."""
    new = NewMessage(organisation_id, job_id, execution_id, event, url, payload, closes_job)
    (message,) = enqueue_all(session, [new], now)
    return message


def _chain_tails(
    session: Session | Connection, execution_ids: set[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """The last message written about each of these executions (the one no other
    follows): one query, the session's unwritten messages flushed first."""
    if not execution_ids:
        return {}
    later = aliased(WebhookMessage)
    rows = session.execute(
        select(WebhookMessage.execution_id, WebhookMessage.id).where(
            WebhookMessage.execution_id.in_(execution_ids),
            ~exists().where(later.follows_id == WebhookMessage.id),
        )
    )
    return {execution_id: message_id for execution_id, message_id in rows if execution_id}


def sendable(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """SQL for "this message is due ``now``" (a time, or a parameter of a statement built
    once): still being tried, its time has come, and what it waits for is settled
    (delivered, failed or gone) — the message it follows, and for a message that closes
    its job every message about the job's executions, including those whose
    ``execution.finished`` events are not messages yet. A message in a sender's hands is
    still being tried: what waits for it waits for its outcome."""
    followed, about_execution = aliased(WebhookMessage), aliased(WebhookMessage)
    unsettled_predecessor = exists().where(
        followed.id == WebhookMessage.follows_id, followed.state == MessageState.SENDING
    )
    # A closing message's checks look up its own job by index. ``OFFSET 0`` keeps
    # PostgreSQL from hashing them instead: a hashed check reads every message being tried
    # (every job's) once per claim, 150 ms with 100,000 of them.
    unsettled_execution_message = (
        select(about_execution.id)
        .where(
            about_execution.job_id == WebhookMessage.job_id,
            about_execution.execution_id.is_not(None),
            about_execution.state == MessageState.SENDING,
        )
        .offset(0)
        .exists()
    )
    unwritten_execution_message = (
        select(OutboxEvent.id)
        .where(OutboxEvent.job_id == WebhookMessage.job_id, OutboxEvent.topic == EXECUTION_FINISHED)
        .offset(0)
        .exists()
    )
    return and_(
        WebhookMessage.state == MessageState.SENDING,
        WebhookMessage.next_attempt_at <= now,
        ~unsettled_predecessor,
        or_(
            WebhookMessage.closes_job == false(),
            and_(~unsettled_execution_message, ~unwritten_execution_message),
        ),
    )


def message_log(
    session: Session,
    organisation_id: uuid.UUID,
    *,
    job_id: uuid.UUID,
    execution_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> MessageLogPage:
    """A page of the messages of a job (or of one of its executions), oldest first, each
    with every attempt: at most ``limit`` messages after ``cursor`` (the ``cursor`` query
    parameter of a previous page). Keyed on (created_at, id), so pages neither skip nor
    repeat a message while others are being added."""
    stmt = select(WebhookMessage).where(
        WebhookMessage.organisation_id == organisation_id, WebhookMessage.job_id == job_id
    )
    if execution_id is not None:
        stmt = stmt.where(WebhookMessage.execution_id == execution_id)
    page = keyset_page(
        session,
        stmt,
        sort=LOG_CURSOR_SORT,
        column=WebhookMessage.created_at,
        id_column=WebhookMessage.id,
        descending=False,
        cursor=cursor,
        limit=limit,
        parameter="cursor",
    )
    messages: list[WebhookMessage] = page.items
    attempts = _attempts_of(session, [m.id for m in messages])
    return MessageLogPage([MessageLog(m, attempts[m.id]) for m in messages], page.next_cursor)


def _attempts_of(
    session: Session, message_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[WebhookDelivery]]:
    """Every attempt of these messages, by message, in order."""
    attempts: dict[uuid.UUID, list[WebhookDelivery]] = {m: [] for m in message_ids}
    if message_ids:
        for delivery in session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.message_id.in_(message_ids))
            .order_by(WebhookDelivery.message_id, WebhookDelivery.attempt)
        ):
            attempts[delivery.message_id].append(delivery)
    return attempts


def get_message(session: Session, organisation_id: uuid.UUID, message_id: uuid.UUID) -> MessageLog:
    message = session.get(WebhookMessage, message_id)
    if message is None or message.organisation_id != organisation_id:
        raise NotFound(f"Delivery {message_id} not found")
    return MessageLog(message, _attempts_of(session, [message_id])[message_id])


def resend(session: Session, organisation_id: uuid.UUID, message_ids: Sequence[uuid.UUID]) -> int:
    """Send these messages once more, now, whatever their state (a delivered one too: the
    receiver asked for it). Returns how many were queued."""
    if not message_ids:
        return 0
    now = utcnow()
    result = session.execute(
        update(WebhookMessage)
        .where(
            WebhookMessage.organisation_id == organisation_id,
            WebhookMessage.id.in_(list(message_ids)),
        )
        .values(state=MessageState.SENDING, next_attempt_at=now, updated_at=now)
    )
    _fill_receivers(session, message_ids)
    if result.rowcount:  # type: ignore[attr-defined]
        kick_after_commit(session)
    return int(result.rowcount)  # type: ignore[attr-defined]


def _fill_receivers(session: Session, message_ids: Sequence[uuid.UUID]) -> None:
    """The receiver of messages written before messages had one (sent again now)."""
    rows = session.execute(
        select(WebhookMessage.id, WebhookMessage.url).where(
            WebhookMessage.id.in_(list(message_ids)), WebhookMessage.receiver == ""
        )
    ).all()
    if rows:
        session.execute(
            update(WebhookMessage),
            [{"id": message_id, "receiver": origin_of(url)} for message_id, url in rows],
        )


def resend_one(session: Session, organisation_id: uuid.UUID, message_id: uuid.UUID) -> None:
    get_message(session, organisation_id, message_id)  # the caller's, or 404
    if not resend(session, organisation_id, [message_id]):
        raise Conflict(f"Delivery {message_id} cannot be resent")


def failed_since(
    session: Session, organisation_id: uuid.UUID, job_ids: Sequence[uuid.UUID], since: datetime
) -> list[uuid.UUID]:
    """The messages of these jobs that failed for good (or met a 410) since ``since``."""
    return list(
        session.scalars(
            select(WebhookMessage.id).where(
                WebhookMessage.organisation_id == organisation_id,
                WebhookMessage.job_id.in_(list(job_ids)),
                WebhookMessage.state.in_([MessageState.FAILED, MessageState.GONE]),
                WebhookMessage.created_at >= since,
            )
        )
    )
