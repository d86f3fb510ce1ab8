"""Sending due webhook messages: signed, in order, to the checked address, each attempt
logged.

A call (a send round) takes the due messages with ``FOR UPDATE SKIP LOCKED`` and leases
them (their ``next_attempt_at`` moves past the send timeout), so concurrent senders never
send a message twice at once; a sender that dies leaves the lease to expire and the message
is sent again (at least once, with the same ``webhook-id``). A message is due only once
what it waits for is settled (:func:`shared.webhooks.messages.sendable`): a data point's
later callback never overtakes its earlier one, and a batch's callback leaves after every
one of its data points' callbacks was delivered or given up.

Every request is signed: a round signs with a :class:`Signer` per organisation, which
cannot be made without a secret, and the organisations of the round get their secret
first if they have none.

Every attempt is a :class:`WebhookDelivery` row written in the lease's transaction, before
any request of the round leaves, and completed once the round's requests have ended: a
sender killed in between leaves its attempts logged, their outcome unknown, and the retry
is the next attempt. Two statements before the round (lease, attempts) and two after it
(outcomes, messages), whatever its size. The message is then delivered (2xx), gone (410:
no more attempts), failed (the schedule is spent) or due again after the schedule's next
wait, jittered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import insert, select, update
from standardwebhooks.webhooks import Webhook

from shared.db import session_scope
from shared.models import WebhookDelivery, WebhookMessage, utcnow
from shared.netguard import RefusedURL, resolve
from shared.settings import get_settings
from shared.webhooks.messages import MessageState, sendable
from shared.webhooks.secrets import signing_secrets_of

log = logging.getLogger(__name__)

MAX_LOGGED_BODY = 1024
BATCH = 200


@dataclass(frozen=True)
class _Send:
    delivery_id: uuid.UUID  # the attempt's row, written before the request leaves
    message_id: uuid.UUID
    attempt: int
    url: str
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class _Result:
    send: _Send
    status_code: int | None
    response_body: str | None
    error: str | None
    latency_ms: int
    permanent: bool = False  # an address we will not send to: no more attempts


class Signer:
    """Signs for one organisation with every secret that signs now (current first); there
    is no signer without a secret, so there is no request without a signature."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("a callback is never sent unsigned: no signing secret")
        self._keys = [Webhook(s) for s in secrets]

    def sign(self, message_id: str, timestamp: datetime, body: str) -> str:
        """The ``webhook-signature`` header: one ``v1,<base64>`` per secret, space-separated."""
        return " ".join(key.sign(message_id, timestamp, body) for key in self._keys)


def deliver_due(limit: int = BATCH) -> dict[str, int]:
    """Send the messages that are due (at most ``limit``); returns counts by outcome and
    ``more`` = 1 when others were waiting."""
    settings = get_settings()
    now = utcnow()
    lease = timedelta(seconds=settings.webhook_timeout_seconds * 2 + 30)
    with session_scope() as session:
        due = list(
            session.scalars(
                select(WebhookMessage)
                .where(sendable(now))
                .order_by(WebhookMessage.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if not due:
            return {"sent": 0}
        signers = {
            organisation_id: Signer(secrets)
            for organisation_id, secrets in signing_secrets_of(
                session, {m.organisation_id for m in due}, now
            ).items()
        }
        sends = [_prepare(m, signers[m.organisation_id], now) for m in due]
        session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id.in_([m.id for m in due]))
            .values(next_attempt_at=now + lease, attempts=WebhookMessage.attempts + 1)
        )
        # Logged and committed before any request leaves: a sender that dies after sending
        # leaves its attempts in the log (the outcome unknown), never a request unlogged.
        session.execute(insert(WebhookDelivery), [_attempt_row(s, now) for s in sends])
    results = asyncio.run(
        _post_all(sends, settings.webhook_timeout_seconds, settings.webhook_concurrency)
    )
    counts = _record(results)
    counts["more"] = int(len(due) == limit)
    return counts


def soonest_retry() -> float | None:
    """Seconds until the next message is due (None: nothing waits, or only messages
    waiting for others, which a round that settles those looks at again)."""
    far = utcnow() + timedelta(days=3650)
    with session_scope() as session:
        due = session.scalar(
            select(WebhookMessage.next_attempt_at)
            .where(sendable(far))
            .order_by(WebhookMessage.next_attempt_at)
            .limit(1)
        )
    if due is None:
        return None
    return max(0.0, (due - utcnow()).total_seconds())


def _prepare(message: WebhookMessage, signer: Signer, now: datetime) -> _Send:
    body = json.dumps(message.payload, separators=(",", ":"))
    headers = {
        "content-type": "application/json",
        "user-agent": "jobyard-webhooks",
        "webhook-id": str(message.id),
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(str(message.id), now, body),
    }
    return _Send(uuid.uuid4(), message.id, message.attempts + 1, message.url, body, headers)


def _attempt_row(send: _Send, now: datetime) -> dict[str, object]:
    """The attempt's delivery row as written before the request: no outcome yet."""
    return {
        "id": send.delivery_id,
        "message_id": send.message_id,
        "attempt": send.attempt,
        "url": send.url,
        "attempted_at": now,
    }


async def _post_all(sends: list[_Send], timeout: float, concurrency: int) -> list[_Result]:
    """Every send at once (at most ``concurrency`` connections), on one aiohttp session:
    a tenth of the CPU per request of a thread pool of sync clients."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as session:
        return list(await asyncio.gather(*(_post(session, s, timeout) for s in sends)))


async def _post(session: aiohttp.ClientSession, send: _Send, timeout: float) -> _Result:
    """One attempt, the address look-up included, ended within ``timeout``: a round's
    outcomes are all recorded soon after it (an attempt older than that without an
    outcome is one whose sender stopped)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            return await _attempt(session, send, started)
    except TimeoutError:
        error = f"TimeoutError: no answer within {timeout:g} s"
        return _Result(send, None, None, error, _elapsed_ms(started))


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


async def _attempt(session: aiohttp.ClientSession, send: _Send, started: float) -> _Result:
    try:
        target = await asyncio.to_thread(resolve, send.url)  # DNS may block: off the loop
    except RefusedURL as exc:
        return _Result(send, None, None, exc.message, _elapsed_ms(started), permanent=True)
    parts = urlsplit(send.url)
    host = f"{target.host}:{parts.port}" if parts.port else target.host
    try:
        async with session.post(
            target.url,
            data=send.body.encode(),
            headers={**send.headers, "host": host},
            server_hostname=target.host if parts.scheme == "https" else None,
            allow_redirects=False,
        ) as response:
            head = await response.content.read(MAX_LOGGED_BODY)
            return _Result(
                send, response.status, head.decode(errors="replace"), None, _elapsed_ms(started)
            )
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        return _Result(
            send, None, None, f"{type(exc).__name__}: {exc}".strip(), _elapsed_ms(started)
        )


def _next_state(result: _Result, schedule: list[float]) -> tuple[str, float | None]:
    """(state, seconds until the next attempt)."""
    code = result.status_code
    if code is not None and 200 <= code < 300:
        return MessageState.DELIVERED, None
    if code == 410 or result.permanent:
        return MessageState.GONE, None
    if result.send.attempt >= len(schedule):
        return MessageState.FAILED, None
    wait = schedule[result.send.attempt]
    return MessageState.SENDING, wait * random.uniform(0.9, 1.1)


def _record(results: list[_Result]) -> dict[str, int]:
    """Every attempt's outcome on its delivery row, and its message's new state: two
    statements (by primary key, executemany)."""
    schedule = get_settings().webhook_retry_schedule
    now = utcnow()
    counts: dict[str, int] = {"sent": len(results)}
    outcomes, messages = [], []
    for result in results:
        state, wait = _next_state(result, schedule)
        counts[state] = counts.get(state, 0) + 1
        outcomes.append(
            {
                "id": result.send.delivery_id,
                "status_code": result.status_code,
                "response_body": result.response_body,
                "error": result.error,
                "latency_ms": result.latency_ms,
                "completed_at": now,
            }
        )
        messages.append(
            {
                "id": result.send.message_id,
                "state": state,
                "next_attempt_at": None if wait is None else now + timedelta(seconds=wait),
                "updated_at": now,
            }
        )
    with session_scope() as session:
        session.execute(update(WebhookDelivery), outcomes)
        session.execute(update(WebhookMessage), messages)
    if counts.get(MessageState.FAILED):
        log.info("%d webhook message(s) failed for good", counts[MessageState.FAILED])
    return counts
