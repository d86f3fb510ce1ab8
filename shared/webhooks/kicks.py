"""Waking the webhook senders: a PUBLISH on a Redis channel once the transaction that
wrote messages has committed (never before: a sender woken early would not see them).
At most once: a kick lost while Redis is away leaves the messages to the senders' poll."""

from __future__ import annotations

import logging

import redis
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared.db import scope_of
from shared.engine.progress import redis_client

log = logging.getLogger(__name__)

KICK_CHANNEL = "jobyard:webhooks:due"
_KICK_KEY = "jobyard.webhooks.kick"  # in Session.info / a connection scope's values


def kick() -> None:
    """Wake the senders now (best effort: they poll as well)."""
    try:
        redis_client().publish(KICK_CHANNEL, b"1")
    except redis.RedisError as exc:
        log.warning("webhooks: senders not woken (they poll): %s", exc)


def kick_after_commit(executor: Session | Connection) -> None:
    """Wake the senders once the executor's transaction commits (once per transaction)."""
    if isinstance(executor, Session):
        if not executor.info.get(_KICK_KEY):
            executor.info[_KICK_KEY] = True

            def after(session: Session) -> None:
                session.info.pop(_KICK_KEY, None)
                kick()

            event.listen(executor, "after_commit", after, once=True)
        return
    scope = scope_of(executor)
    if scope is None:
        return  # a bare connection: the senders' poll finds the messages
    if not scope.values.get(_KICK_KEY):
        scope.values[_KICK_KEY] = True
        scope.after_commit.append(kick)
