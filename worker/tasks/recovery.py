"""``recovery.sweep``: hand out again whatever was accepted but lost in flight."""

from __future__ import annotations

import logging

from shared import idempotency
from shared.db import session_scope
from shared.engine import dispatch, outbox, sweep_log
from shared.engine.jobs import dispatch_jobs
from shared.engine.recovery import sweep
from shared.messaging.broker import broker_was_emptied, queue_depth
from shared.messaging.queues import EXECUTIONS_QUEUE, RECOVERY_SWEEP_TASK
from shared.models import utcnow
from worker.tasks.durable import durable_task

log = logging.getLogger(__name__)


@durable_task(RECOVERY_SWEEP_TASK)
def recovery_sweep() -> dict[str, int]:
    """Run one sweep, publish the fan-outs it found, top dispatch up, drain the outbox,
    purge expired idempotency keys; record what it did (:mod:`shared.engine.sweep_log`)."""
    emptied = broker_was_emptied()
    if emptied:
        log.warning("the broker lost its data (its mark is gone): handing everything out again")
    report = sweep(
        executions_queue_empty=queue_depth(EXECUTIONS_QUEUE) == 0, broker_emptied=emptied
    )
    dispatch_jobs(report.jobs_redispatched)
    summary = report.as_dict()
    summary["dispatched"] = dispatch.fill()
    summary["outbox_events"] = sum(outbox.drain(session_scope).values())
    # Housekeeping rides along: Idempotency-Key answers older than their 24 h.
    with session_scope() as session:
        summary["idempotency_keys_purged"] = idempotency.purge_expired(session)
    sweep_log.record(summary, utcnow())  # the dashboard's operations page shows it
    routine = ("dispatched", "outbox_events", "idempotency_keys_purged", "broker_emptied")
    if any(v for k, v in summary.items() if k not in routine):
        log.warning("recovery sweep: %s", summary)
    return summary
