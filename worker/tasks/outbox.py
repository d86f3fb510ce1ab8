"""``outbox.drain``: hand new ``job.finished`` (and later) events to their consumers."""

from __future__ import annotations

from shared.db import session_scope
from shared.engine import outbox
from shared.messaging import publisher
from shared.messaging.queues import OUTBOX_DRAIN_TASK
from worker.tasks.durable import durable_task


@durable_task(OUTBOX_DRAIN_TASK)
def drain() -> dict[str, int]:
    """Drain every consumer's due events (concurrent drains skip each other's rows); when a
    consumer had more than one call takes, ask for another drain instead of waiting for
    the sweep."""
    handled = outbox.drain(session_scope)
    if sum(handled.values()) and outbox.has_due_events(session_scope):
        publisher.publish_outbox_drain()
    return handled
