"""``schedules.tick``: run the cached jobs of every project whose scheduled slot is due,
and the knowledge-base sync jobs whose slot is due."""

from __future__ import annotations

import logging

from shared.kb import sync
from shared.mentionlab.schedules import tick
from shared.messaging.queues import SCHEDULE_TICK_TASK
from worker.tasks.durable import durable_task

log = logging.getLogger(__name__)


@durable_task(SCHEDULE_TICK_TASK)
def schedules_tick() -> dict[str, int]:
    """Claim due slots (compare-and-set, so concurrent ticks never run a slot twice)."""
    report = tick()
    syncs = sync.tick()
    summary = {
        "projects_claimed": report.projects_claimed,
        "projects_adopted": report.projects_adopted,
        "jobs_created": len(report.jobs_created),
        "jobs_undispatched": report.jobs_undispatched,
        "sync_runs_started": len(syncs.runs_started),
        "sync_slots_skipped": syncs.slots_skipped,
        "sync_jobs_completed": syncs.completed,
    }
    if report.projects_claimed or report.projects_adopted or syncs.runs_started:
        log.info("schedules tick: %s", summary)
    return summary
