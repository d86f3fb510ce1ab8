"""``executions.run``: one attempt of one execution."""

from __future__ import annotations

import uuid

from celery import shared_task
from sqlalchemy.exc import InterfaceError, OperationalError

from shared.queues import RUN_EXECUTION_TASK
from worker.runner import run_execution

# The database went away mid-task (restart, failover, a killed connection). Whatever the
# attempt had committed stays; the retried message re-claims or, if the lease is still
# held, is dropped and the recovery sweep takes over when the lease expires.
DATABASE_GONE = (OperationalError, InterfaceError)

# How every task that writes the database is delivered and retried.
DURABLE_TASK_OPTIONS: dict[str, object] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "autoretry_for": DATABASE_GONE,
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(name=RUN_EXECUTION_TASK, **DURABLE_TASK_OPTIONS)
def run(execution_id: str) -> str:
    """Claim, work and finish one execution; a stale or duplicate message is dropped."""
    return run_execution(uuid.UUID(execution_id))
