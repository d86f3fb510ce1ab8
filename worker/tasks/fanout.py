"""``jobs.fan_out``: write a job's executions and publish them."""

from __future__ import annotations

import uuid

from celery import shared_task

from shared.queues import FAN_OUT_TASK
from shared.services.dispatch import fan_out_job
from worker.tasks.executions import DATABASE_GONE


@shared_task(
    name=FAN_OUT_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=DATABASE_GONE,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=8,
)
def fan_out(job_id: str) -> int:
    """Fan a job out into executions (idempotent)."""
    return fan_out_job(uuid.UUID(job_id))
