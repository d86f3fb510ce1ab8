"""``jobs.fan_out``: write a job's executions and publish them."""

from __future__ import annotations

import uuid

from celery import shared_task

from shared.queues import FAN_OUT_TASK
from shared.services.dispatch import fan_out_job
from worker.tasks.executions import DURABLE_TASK_OPTIONS


@shared_task(name=FAN_OUT_TASK, **DURABLE_TASK_OPTIONS)
def fan_out(job_id: str) -> int:
    """Fan a job out into executions (idempotent)."""
    return fan_out_job(uuid.UUID(job_id))
