"""``outbox.drain``: hand new ``job.finished`` (and later) events to their consumers."""

from __future__ import annotations

from shared.db import new_session
from shared.engine import outbox
from shared.messaging.queues import OUTBOX_DRAIN_TASK
from worker.tasks.durable import durable_task


@durable_task(OUTBOX_DRAIN_TASK)
def drain() -> dict[str, int]:
    """Drain every consumer's due events (concurrent drains skip each other's rows)."""
    return outbox.drain(new_session)
