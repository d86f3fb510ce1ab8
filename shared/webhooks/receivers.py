"""Receivers: a message's receiver is its URL's origin, and each receiver has a circuit
breaker shared by every sender process (a ``webhook_receivers`` row).

A receiver that keeps failing (``JOBYARD_WEBHOOK_BREAKER_FAILURES`` attempts in a row
without a usable answer: no connection, no address, no answer in time, a 5xx or a 429) is
backed off as a whole: its breaker opens for ``JOBYARD_WEBHOOK_BREAKER_SECONDS``, and
while it is open no sender takes its messages, so they wait without spending their
attempts one by one. Then one sender sends one of them (the probe): any other answer
closes the breaker and the rest follow; a failure opens it again for twice as long (up to
``JOBYARD_WEBHOOK_BREAKER_MAX_SECONDS``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Integer, bindparam, select, update
from sqlalchemy.orm import Session

from shared.settings import get_settings
from shared.webhooks.models import WebhookReceiver


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url`` (the default port spelled out), lower-cased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:  # an out-of-range port: the sender refuses the URL itself
        port = 0
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass(frozen=True)
class Verdict:
    """What a receiver's attempts of one round said: how many failed in a row at the
    end, and whether any got a usable answer (which closes the breaker)."""

    answered: bool
    failures_after: int  # failures after the last answer (all of them, when none)
    last_error: str | None = None


def open_breakers(session: Session, now: datetime) -> tuple[set[str], set[str]]:
    """(origins whose breaker is open now, origins whose breaker waits for a probe)."""
    threshold = get_settings().webhook_breaker_failures
    rows = session.execute(_open_statement(), {"threshold": threshold}).all()
    open_now = {origin for origin, until in rows if until is not None and until > now}
    probing = {origin for origin, until in rows if until is None or until <= now}
    return open_now, probing


@cache
def _open_statement() -> Any:
    """Built once: a sender runs it every take."""
    return select(WebhookReceiver.origin, WebhookReceiver.open_until).where(
        WebhookReceiver.failures >= bindparam("threshold", type_=Integer())
    )


def claim_probe(session: Session, origin: str, now: datetime) -> bool:
    """Take the right to send the one probe to ``origin`` (another sender may have taken
    it: then False). The breaker stays open for the probe's time meanwhile."""
    settings = get_settings()
    lease = now + timedelta(seconds=settings.webhook_timeout_seconds * 2 + 30)
    result = session.execute(
        update(WebhookReceiver)
        .where(
            WebhookReceiver.origin == origin,
            (WebhookReceiver.open_until.is_(None)) | (WebhookReceiver.open_until <= now),
        )
        .values(open_until=lease, updated_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def note_verdicts(session: Session, verdicts: Mapping[str, Verdict], now: datetime) -> None:
    """Move each receiver's breaker after a round: an answer closes it; failures add up,
    and at the threshold open it (for longer each time it opens again in a row). Rows
    are locked in origin order: two senders never wait for each other in a circle."""
    if not verdicts:
        return
    settings = get_settings()
    origins = sorted(verdicts)
    rows = {
        row.origin: row
        for row in session.scalars(
            select(WebhookReceiver)
            .where(WebhookReceiver.origin.in_(origins))
            .order_by(WebhookReceiver.origin)
            .with_for_update()
        )
    }
    for origin in origins:
        verdict = verdicts[origin]
        row = rows.get(origin)
        if row is None:
            if verdict.failures_after == 0:
                continue  # a healthy receiver needs no row
            row = WebhookReceiver(origin=origin, failures=0, opened=0, updated_at=now)
            session.add(row)
        if verdict.answered:
            row.failures, row.opened, row.open_until = 0, 0, None
        row.failures += verdict.failures_after
        if verdict.failures_after and row.failures >= settings.webhook_breaker_failures:
            wait = min(
                settings.webhook_breaker_seconds * 2**row.opened,
                settings.webhook_breaker_max_seconds,
            )
            row.open_until = now + timedelta(seconds=wait)
            row.opened += 1
        if verdict.last_error is not None:
            row.last_error = verdict.last_error
        row.updated_at = now
    session.flush()


def verdicts_of(outcomes: Iterable[tuple[str, bool, str | None]]) -> dict[str, Verdict]:
    """Per origin, from its attempts' (origin, failed, error) in the order they ended."""
    answered: dict[str, bool] = {}
    failures: dict[str, int] = {}
    errors: dict[str, str | None] = {}
    for origin, failed, error in outcomes:
        if failed:
            failures[origin] = failures.get(origin, 0) + 1
            errors[origin] = error
        else:
            answered[origin] = True
            failures[origin] = 0
    return {
        origin: Verdict(answered.get(origin, False), failures.get(origin, 0), errors.get(origin))
        for origin in failures
    }
