"""``executions.run``: one attempt of one execution."""

from __future__ import annotations

import uuid

from celery import shared_task

from shared.queues import RUN_EXECUTION_TASK
from worker.runner import run_execution


@shared_task(
    name=RUN_EXECUTION_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def run(execution_id: str) -> str:
    """Claim, work and finish one execution; a stale or duplicate message is dropped."""
    return run_execution(uuid.UUID(execution_id))
