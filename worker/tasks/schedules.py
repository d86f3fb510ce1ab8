"""``schedules.tick``: the engine's periodic slots (a project's recurrence, a sync job's
slots, any kind a domain registers) that are due run once each."""

from __future__ import annotations

import logging

from shared.engine import periodic
from shared.messaging.queues import SCHEDULE_TICK_TASK
from worker.tasks.durable import durable_task

log = logging.getLogger(__name__)


@durable_task(SCHEDULE_TICK_TASK)
def schedules_tick() -> dict[str, int]:
    """Claim and run the due slots (each once, however many ticks run at once)."""
    summary = periodic.tick().summary()
    if any(summary.values()):
        log.info("schedules tick: %s", summary)
    return summary
