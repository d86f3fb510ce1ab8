"""Webhook messages: what to send where, and their delivery log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from shared.errors import Conflict, NotFound
from shared.models import WebhookDelivery, WebhookMessage, utcnow


@dataclass(frozen=True)
class MessageLog:
    """A message and every attempt to deliver it, oldest first."""

    message: WebhookMessage
    attempts: list[WebhookDelivery]


class MessageState:
    SENDING = "sending"  # to be tried (again) at next_attempt_at
    DELIVERED = "delivered"  # a 2xx
    FAILED = "failed"  # every attempt of the schedule failed
    GONE = "gone"  # the receiver answered 410: no more attempts


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
) -> WebhookMessage:
    """A message to send at once, in the caller's transaction (an outbox consumer's)."""
    message = WebhookMessage(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        job_id=job_id,
        execution_id=execution_id,
        event=event,
        url=url,
        payload=payload,
        state=MessageState.SENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    return message


def message_log(
    session: Session,
    organisation_id: uuid.UUID,
    *,
    job_id: uuid.UUID,
    execution_id: uuid.UUID | None,
) -> list[MessageLog]:
    """The messages of a job (or of one of its executions) with every attempt, oldest first."""
    where = [WebhookMessage.organisation_id == organisation_id, WebhookMessage.job_id == job_id]
    if execution_id is not None:
        where.append(WebhookMessage.execution_id == execution_id)
    messages = list(
        session.scalars(
            select(WebhookMessage).where(and_(*where)).order_by(WebhookMessage.created_at)
        )
    )
    attempts: dict[uuid.UUID, list[WebhookDelivery]] = {m.id: [] for m in messages}
    if messages:
        for delivery in session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.message_id.in_(list(attempts)))
            .order_by(WebhookDelivery.attempted_at)
        ):
            attempts[delivery.message_id].append(delivery)
    return [MessageLog(m, attempts[m.id]) for m in messages]


def get_message(session: Session, organisation_id: uuid.UUID, message_id: uuid.UUID) -> MessageLog:
    message = session.get(WebhookMessage, message_id)
    if message is None or message.organisation_id != organisation_id:
        raise NotFound(f"Delivery {message_id} not found")
    attempts = list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.message_id == message_id)
            .order_by(WebhookDelivery.attempted_at)
        )
    )
    return MessageLog(message, attempts)


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
    return int(result.rowcount)  # type: ignore[attr-defined]


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
