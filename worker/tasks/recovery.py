"""``recovery.sweep``: publish again whatever was accepted but lost in flight."""

from __future__ import annotations

import logging

from celery import shared_task

from shared import publisher
from shared.broker import queue_depth
from shared.queues import EXECUTIONS_QUEUE, RECOVERY_SWEEP_TASK
from shared.services.jobs import dispatch_jobs
from shared.services.recovery import sweep

log = logging.getLogger(__name__)


@shared_task(name=RECOVERY_SWEEP_TASK, ignore_result=True)
def recovery_sweep() -> dict[str, int]:
    """Run one sweep and publish what it found."""
    report = sweep(executions_queue_empty=queue_depth(EXECUTIONS_QUEUE) == 0)
    dispatch_jobs(report.jobs_redispatched)
    publisher.publish_executions(report.executions_redispatched)
    summary = {
        "jobs_redispatched": len(report.jobs_redispatched),
        "executions_redispatched": len(report.executions_redispatched),
        "executions_exhausted": report.executions_exhausted,
    }
    if any(summary.values()):
        log.warning("recovery sweep: %s", summary)
    return summary
