"""``schedules.tick``: run the cached jobs of every project whose scheduled slot is due."""

from __future__ import annotations

import logging

from shared.mentionlab.schedules import tick
from shared.messaging.queues import SCHEDULE_TICK_TASK
from worker.tasks.durable import durable_task

log = logging.getLogger(__name__)


@durable_task(SCHEDULE_TICK_TASK)
def schedules_tick() -> dict[str, int]:
    """Claim due slots (compare-and-set, so concurrent ticks never run a slot twice)."""
    report = tick()
    summary = {
        "projects_claimed": report.projects_claimed,
        "projects_adopted": report.projects_adopted,
        "jobs_created": len(report.jobs_created),
        "jobs_undispatched": report.jobs_undispatched,
    }
    if report.projects_claimed or report.projects_adopted:
        log.info("schedules tick: %s", summary)
    return summary
