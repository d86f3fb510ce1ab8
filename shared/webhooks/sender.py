"""The webhook sender: a process of its own (``jobyard sender``; the Procfile's ``sender``),
any number of them at once, sending due messages signed, in order, fairly, each attempt
logged.

One asyncio loop per process. It wakes when messages are written (a Redis kick published
after the commit, :mod:`shared.webhooks.kicks`), when one of its requests ends, and every
``JOBYARD_WEBHOOK_POLL_SECONDS`` anyway. Each step is one transaction (:func:`cycle`): it
records the outcomes of the requests that ended (two statements, and the receivers'
breakers) and takes more messages, at most as many as it has room for.

Fair: messages are taken per (organisation, receiver), the one served least recently
first, round-robin over organisations then over their receivers, as dispatch hands out
executions. Each receiver (the URL's origin) has at most
``JOBYARD_WEBHOOK_RECEIVER_CONCURRENCY`` requests in flight per sender, on kept-alive
connections (one aiohttp session, a per-host connection limit), each ended within
``JOBYARD_WEBHOOK_TIMEOUT_SECONDS``. A sender takes a receiver's messages up to twice that
bound (``TAKEN_AHEAD``: the next requests are ready when one ends, whatever the step's
time) and no more until some end, so a hanging receiver's backlog stays in the table, not
queued in the sender, and whatever other receivers have due goes out meanwhile. Host names are resolved once per receiver at a time
(cached briefly, off the loop). A receiver that keeps failing is backed off whole by its
circuit breaker (:mod:`shared.webhooks.receivers`).

Safe with several senders: a take locks its messages ``FOR UPDATE SKIP LOCKED`` and
leases them (``next_attempt_at`` moves past the send timeout), so no message is sent by
two at once; a sender killed leaves the lease to expire and the message is sent again (at
least once, same ``webhook-id``). A message is due only once what it waits for is settled
(:func:`shared.webhooks.messages.sendable`): a data point's later callback never overtakes
its earlier one, and a batch's callback leaves after its data points' were delivered or
given up.

Every request is signed (a :class:`Signer` per organisation cannot be made without a
secret) and every attempt is a :class:`WebhookDelivery` row committed with the lease,
before the request leaves, and completed when its outcome is recorded: a sender killed in
between leaves its attempts logged, their outcome unknown, and the retry is the next
attempt. The message is then delivered (2xx), gone (410, or an address refused: no more
attempts), failed (the schedule is spent) or due again after the schedule's next wait,
jittered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any

import aiohttp
import redis
import redis.asyncio
from sqlalchemy import (
    Integer,
    Row,
    Table,
    Text,
    bindparam,
    cast,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from shared.db import dialect_name, session_scope
from shared.engine.finish import to_json
from shared.models import utcnow
from shared.models.base import UTCDateTime
from shared.settings import get_settings
from shared.webhooks.kicks import KICK_CHANNEL
from shared.webhooks.messages import TAKEN_AHEAD, MessageState, sendable
from shared.webhooks.models import WebhookDelivery, WebhookMessage
from shared.webhooks.posting import NO_AIOHTTP_TIMEOUT, Lanes, Resolver, Result, Send
from shared.webhooks.receivers import (
    claim_probe,
    note_verdicts,
    open_breakers,
    origin_of,
    verdicts_of,
)
from shared.webhooks.secrets import signing_secrets_of

log = logging.getLogger(__name__)

GROUPS_PER_TAKE = 200  # (organisation, receiver) pairs looked at per take, in turn


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


@lru_cache(maxsize=1024)
def signer_of(secrets: tuple[str, ...]) -> Signer:
    """The signer for these secrets, made once (each take reads the secrets again, so a
    rotation signs from the next take on)."""
    return Signer(secrets)


# -- taking messages, fairly ---------------------------------------------------------


@dataclass
class Turns:
    """Who was served least recently: organisations, then their receivers."""

    clock: itertools.count[int] = field(default_factory=itertools.count)
    organisations: dict[uuid.UUID, int] = field(default_factory=dict)
    receivers: dict[tuple[uuid.UUID, str], int] = field(default_factory=dict)

    def order(self, groups: Sequence[tuple[uuid.UUID, str]]) -> list[tuple[uuid.UUID, str]]:
        return sorted(
            groups, key=lambda g: (self.organisations.get(g[0], -1), self.receivers.get(g, -1))
        )

    def served(self, group: tuple[uuid.UUID, str]) -> None:
        turn = next(self.clock)
        self.organisations[group[0]] = turn
        self.receivers[group] = turn


def take(in_flight: Mapping[str, int], room: int, turns: Turns) -> list[Send]:
    """:func:`take_in` in a transaction of its own, committed before any is sent."""
    with session_scope() as session:
        return take_in(session, in_flight, room, turns)


def take_in(session: Session, in_flight: Mapping[str, int], room: int, turns: Turns) -> list[Send]:
    """Lease up to ``room`` due messages, fairly across (organisation, receiver), none to
    a receiver with its share taken already (``in_flight`` counts this sender's messages
    per receiver, sent or waiting their turn: at most ``TAKEN_AHEAD`` times the bound) or
    behind an open breaker, and log their attempts, in the caller's transaction (which
    commits before any of them is sent)."""
    settings = get_settings()
    share = settings.webhook_receiver_concurrency * TAKEN_AHEAD
    now = utcnow()
    lease = timedelta(seconds=settings.webhook_timeout_seconds * TAKEN_AHEAD + 30)
    open_now, probing = open_breakers(session, now)
    held_back = open_now | {r for r, n in in_flight.items() if n >= share}
    # The statements of a take are built once and go to the connection: no statement
    # building, no cache key, Core rows, no ORM bookkeeping.
    connection = session.connection()
    waiting = connection.execute(_waiting_statement(), {"now": now, "held_back": sorted(held_back)})
    groups = turns.order([(o, r) for o, r in waiting])
    taken: list[Row[Any]] = []
    taken_per_receiver: Counter[str] = Counter()
    # Logged and committed before any request leaves: a sender that dies after sending
    # leaves its attempts in the log (the outcome unknown), never a request unlogged.
    # PostgreSQL logs them in the statement that leases them; SQLite, after it.
    logged_with_lease = dialect_name(session) == "postgresql"
    take_statement = _take_statement(logged_with_lease)
    for group in groups[:GROUPS_PER_TAKE]:
        if len(taken) >= room:
            break
        organisation_id, receiver = group
        free = share - in_flight.get(receiver, 0) - taken_per_receiver[receiver]
        if receiver in probing:
            # The breaker's probe: one message, by one sender, nothing else in flight.
            if in_flight.get(receiver) or taken_per_receiver[receiver]:
                continue
            if not claim_probe(session, receiver, now):
                continue
            free = 1
        want = min(free, room - len(taken))
        if want <= 0:
            continue
        leased = connection.execute(
            take_statement,
            {
                "the_organisation": organisation_id,
                "the_receiver": receiver,
                "now": now,
                "want": want,
                "lease_until": now + lease,
            },
        ).all()
        if leased:
            turns.served(group)
            # RETURNING keeps no order: oldest first again, as they were picked.
            taken += sorted(leased, key=_age)
            taken_per_receiver[receiver] += len(leased)
    if not taken:
        return []
    secrets = signing_secrets_of(session, {m.organisation_id for m in taken}, now)
    signers = {organisation_id: signer_of(tuple(s)) for organisation_id, s in secrets.items()}
    timestamp = str(int(now.timestamp()))
    sends = [
        _prepare(
            m,
            m.delivery_id if logged_with_lease else uuid.uuid4(),
            signers[m.organisation_id],
            now,
            timestamp,
        )
        for m in taken
    ]
    if not logged_with_lease:
        connection.execute(insert(DELIVERIES), [_attempt_row(s, now) for s in sends])
    return sends


@cache
def _waiting_statement() -> Any:
    """Who has messages due: (organisation, receiver) pairs, the receivers held back
    left out."""
    return (
        select(MESSAGES.c.organisation_id, MESSAGES.c.receiver)
        .where(
            MESSAGES.c.state == MessageState.SENDING,
            MESSAGES.c.next_attempt_at <= bindparam("now", type_=UTCDateTime()),
            MESSAGES.c.receiver.not_in(bindparam("held_back", expanding=True)),
        )
        .group_by(MESSAGES.c.organisation_id, MESSAGES.c.receiver)
    )


@cache
def _take_statement(log_with_lease: bool) -> Any:
    """One (organisation, receiver)'s due messages, oldest first, at most ``want``, those
    another sender holds skipped, leased (their attempt counted) in one statement, and,
    ``log_with_lease`` (PostgreSQL), their attempts logged by it as well. Built once:
    running it costs no statement building and no cache key."""
    picked = (
        select(WebhookMessage.id)
        .where(
            WebhookMessage.organisation_id == bindparam("the_organisation"),
            WebhookMessage.receiver == bindparam("the_receiver"),
            sendable(bindparam("now", type_=UTCDateTime())),
        )
        .order_by(WebhookMessage.next_attempt_at)
        .limit(bindparam("want", type_=Integer()))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    lease = (
        update(MESSAGES)
        .where(MESSAGES.c.id.in_(picked))
        .values(
            next_attempt_at=bindparam("lease_until", type_=UTCDateTime()),
            attempts=MESSAGES.c.attempts + 1,
        )
        .returning(
            MESSAGES.c.id,
            MESSAGES.c.organisation_id,
            MESSAGES.c.url,
            MESSAGES.c.receiver,
            # The body as stored: no JSON decoded only to be encoded again.
            cast(MESSAGES.c.payload, Text).label("body"),
            MESSAGES.c.attempts,  # counting this attempt
            MESSAGES.c.created_at,
        )
    )
    if not log_with_lease:
        return lease
    leased = lease.cte("leased")
    logged = (
        insert(DELIVERIES)
        .from_select(
            ["id", "message_id", "attempt", "url", "attempted_at"],
            select(
                func.gen_random_uuid(),
                leased.c.id,
                leased.c.attempts,
                leased.c.url,
                bindparam("now", type_=UTCDateTime()),
            ),
        )
        .returning(DELIVERIES.c.id, DELIVERIES.c.message_id)
        .cte("logged")
    )
    return select(leased, logged.c.id.label("delivery_id")).join(
        logged, logged.c.message_id == leased.c.id
    )


def _age(message: Row[Any]) -> tuple[datetime, uuid.UUID]:
    return message.created_at, message.id


def due_count() -> int:
    """Messages due now, whatever waits for what (the backlog a sender's scaler reads)."""
    with session_scope() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(WebhookMessage)
                .where(
                    WebhookMessage.state == MessageState.SENDING,
                    WebhookMessage.next_attempt_at <= utcnow(),
                )
            )
            or 0
        )


MESSAGES: Table = WebhookMessage.__table__  # type: ignore[assignment]
DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]


def _prepare(
    message: Row[Any], delivery_id: uuid.UUID, signer: Signer, now: datetime, timestamp: str
) -> Send:
    body: str = message.body
    message_id = str(message.id)
    headers = {
        "content-type": "application/json",
        "user-agent": "jobyard-webhooks",
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signer.sign(message_id, now, body),
    }
    receiver = message.receiver or origin_of(message.url)
    return Send(delivery_id, message.id, message.attempts, message.url, receiver, body, headers)


def _attempt_row(send: Send, now: datetime) -> dict[str, object]:
    """The attempt's delivery row as written before the request: no outcome yet."""
    return {
        "id": send.delivery_id,
        "message_id": send.message_id,
        "attempt": send.attempt,
        "url": send.url,
        "attempted_at": now,
    }


# -- recording outcomes ----------------------------------------------------------------


def _next_state(result: Result, schedule: list[float]) -> tuple[str, float | None]:
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


def record(results: Sequence[Result]) -> float | None:
    """:func:`record_in` in a transaction of its own."""
    with session_scope() as session:
        return record_in(session, results)


def cycle(
    ended: Sequence[Result], in_flight: Mapping[str, int], room: int, turns: Turns
) -> tuple[float | None, list[Send]]:
    """A sender's step, one transaction: record what ended, then take up to ``room``
    more. Returns the seconds until the soonest retry scheduled, and what was taken."""
    with session_scope() as session:
        soonest = record_in(session, ended) if ended else None
        return soonest, take_in(session, in_flight, room, turns) if room > 0 else []


_RECORD_ATTEMPTS = text(
    """
    UPDATE webhook_deliveries AS d SET
      status_code = v.status_code, response_body = v.response_body, error = v.error,
      latency_ms = v.latency_ms, completed_at = v.completed_at
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
      id uuid, status_code int, response_body text, error text, latency_ms int,
      completed_at timestamptz)
    WHERE d.id = v.id
    """
)
_RECORD_MESSAGES = text(
    """
    UPDATE webhook_messages AS m SET
      state = v.state, next_attempt_at = v.next_attempt_at, updated_at = v.updated_at
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
      id uuid, state text, next_attempt_at timestamptz, updated_at timestamptz)
    WHERE m.id = v.id
    """
)


def record_in(session: Session, results: Sequence[Result]) -> float | None:
    """Every attempt's outcome on its delivery row, its message's new state, and each
    receiver's breaker, in the caller's transaction. Returns the seconds until the
    soonest retry it scheduled (None: none)."""
    schedule = get_settings().webhook_retry_schedule
    now = utcnow()
    counts: Counter[str] = Counter()
    outcomes, messages = [], []
    soonest: float | None = None
    for result in results:
        state, wait = _next_state(result, schedule)
        counts[state] += 1
        if wait is not None:
            soonest = wait if soonest is None else min(soonest, wait)
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
    verdicts = verdicts_of((r.send.receiver, r.receiver_failed, r.error) for r in results)
    if dialect_name(session) == "postgresql":
        # Two statements whatever the count (not one UPDATE per row): the rows travel as
        # one JSON document, as the engine's finish batch sends its outcomes.
        session.execute(_RECORD_ATTEMPTS, {"rows": json.dumps(outcomes, default=to_json)})
        session.execute(_RECORD_MESSAGES, {"rows": json.dumps(messages, default=to_json)})
    else:
        session.execute(update(WebhookDelivery), outcomes)
        session.execute(update(WebhookMessage), messages)
    note_verdicts(session, verdicts, now)
    if counts[MessageState.FAILED]:
        log.info("%d webhook message(s) failed for good", counts[MessageState.FAILED])
    return soonest


# -- sending (shared.webhooks.posting: each attempt on the wire) -----------------------


def deliver_due(limit: int = 200) -> dict[str, int]:
    """One round, outside a sender process: take what is due (at most ``limit``), send it
    all, record the outcomes; counts by outcome (tests step through the order with it)."""
    sends = take({}, limit, Turns())
    if not sends:
        return {"sent": 0}

    async def send_all() -> list[Result]:
        resolver, results = Resolver(), list[Result]()
        try:
            async with aiohttp.ClientSession(timeout=NO_AIOHTTP_TIMEOUT) as session:
                lanes = Lanes(session, resolver, results.append)
                for send in sends:
                    lanes.submit(send)
                await lanes.drained()
                return results
        finally:
            resolver.close()

    results = asyncio.run(send_all())
    record(results)
    counts = Counter(_next_state(r, get_settings().webhook_retry_schedule)[0] for r in results)
    return {"sent": len(results), **counts}


class Sender:
    """One sender process's loop: record what ended and take what is due (one
    transaction), send it."""

    def __init__(self) -> None:
        settings = get_settings()
        self.settings = settings
        self.turns = Turns()
        self.in_flight: Counter[str] = Counter()  # taken, not recorded yet, per receiver
        self.ended: list[Result] = []
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.sent = 0
        self._retry_at: float | None = None  # loop time of the soonest retry scheduled

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        settings = self.settings
        resolver = Resolver()
        connector = aiohttp.TCPConnector(
            limit=settings.webhook_concurrency,
            limit_per_host=settings.webhook_receiver_concurrency,
            keepalive_timeout=30,
        )
        listener = asyncio.create_task(self._listen())
        try:
            async with aiohttp.ClientSession(
                connector=connector, timeout=NO_AIOHTTP_TIMEOUT
            ) as session:
                lanes = Lanes(session, resolver, self._ended)
                log.info("webhook sender ready.")
                while True:
                    await self._sleep()
                    if self.stopping.is_set() and lanes.idle and not self.ended:
                        break
                    sends = await self._step(room=0 if self.stopping.is_set() else None)
                    for send in sends:
                        lanes.submit(send)
                    if sends:
                        self.wake.set()  # more may be due: look again at once
        finally:
            listener.cancel()
            resolver.close()

    async def _sleep(self) -> None:
        """Until woken, a retry falls due, or the poll interval passes."""
        wait = self.settings.webhook_poll_seconds
        loop = asyncio.get_running_loop()
        if self._retry_at is not None:
            wait = max(0.0, min(wait, self._retry_at - loop.time()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=wait)
        self.wake.clear()
        if self._retry_at is not None and self._retry_at <= loop.time():
            self._retry_at = None

    async def _step(self, room: int | None) -> list[Send]:
        """Record what ended and take more (``room``: as much as there is room for)."""
        ended, self.ended = self.ended, []
        for result in ended:  # their room is free whatever becomes of the recording
            self.in_flight[result.send.receiver] -= 1
            if not self.in_flight[result.send.receiver]:
                del self.in_flight[result.send.receiver]
        if room is None:
            room = self.settings.webhook_concurrency - sum(self.in_flight.values())
        if not ended and room <= 0:
            return []
        try:
            soonest, sends = await asyncio.to_thread(
                cycle, ended, dict(self.in_flight), room, self.turns
            )
        except Exception:
            # Not recorded: the attempts read "unknown" and the leases expire, so the
            # messages are sent again (at least once); the loop goes on.
            log.exception("webhooks: %d outcomes not recorded", len(ended))
            return []
        self.sent += len(ended)
        for send in sends:
            self.in_flight[send.receiver] += 1
        if soonest is not None:
            at = asyncio.get_running_loop().time() + soonest
            self._retry_at = at if self._retry_at is None else min(self._retry_at, at)
        if ended:
            self.wake.set()  # messages that waited for these may be due now
        return sends

    def _ended(self, result: Result) -> None:
        self.ended.append(result)  # the list of now: a step may have swapped it meanwhile
        self.wake.set()

    async def _listen(self) -> None:
        """Kicks from Redis wake the loop; while Redis is away, the poll carries on."""
        while True:
            client = redis.asyncio.Redis.from_url(self.settings.redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(KICK_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.wake.set()
            except (redis.RedisError, OSError) as exc:
                log.warning("webhooks: no kicks from Redis (polling meanwhile): %s", exc)
                await asyncio.sleep(1.0)
            finally:
                await client.close()
