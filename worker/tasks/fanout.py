"""``jobs.fan_out``: write a job's executions and start dispatching them."""

from __future__ import annotations

import uuid

from shared import logs
from shared.engine.fanout import fan_out_job
from shared.messaging.queues import FAN_OUT_TASK
from worker.runtime import this_worker_id
from worker.tasks.durable import durable_task


@durable_task(FAN_OUT_TASK)
def fan_out(job_id: str) -> int:
    """Fan a job out into executions (idempotent)."""
    with logs.bound(job_id=job_id):
        return fan_out_job(uuid.UUID(job_id), owner=this_worker_id())
