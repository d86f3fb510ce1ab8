"""Waking the webhook senders: a PUBLISH on a Redis channel once the transaction that
wrote messages has committed (never before: a sender woken early would not see them).
At most once: a kick lost while Redis is away leaves the messages to the senders' poll."""

from __future__ import annotations

import logging

import redis
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared.db import unit_of
from shared.engine.progress import redis_client

log = logging.getLogger(__name__)

KICK_CHANNEL = "jobyard:webhooks:due"
_KICK_KEY = "jobyard.webhooks.kick"  # in the unit of work's values


def kick() -> None:
    """Wake the senders now (best effort: they poll as well)."""
    try:
        redis_client().publish(KICK_CHANNEL, b"1")
    except redis.RedisError as exc:
        log.warning("webhooks: senders not woken (they poll): %s", exc)


def kick_after_commit(executor: Session | Connection) -> None:
    """Wake the senders once the executor's unit of work commits (once per transaction;
    a bare Session or Connection outside one leaves the messages to the senders' poll)."""
    work = unit_of(executor)
    if work is not None:
        work.after_commit_once(_KICK_KEY, kick)
