"""``durable_task``: the one decorator that carries every database-writing task's options.

Late acks with rejection on worker loss (a killed worker's message is delivered again),
results ignored, and a retry — only — when the database went away mid-task (a restart, a
failover, a killed connection): whatever the task had committed stays, and the retried
message finds it (every task is idempotent: it re-reads the rows, never trusts the message).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task
from sqlalchemy.exc import InterfaceError, OperationalError

DATABASE_GONE = (OperationalError, InterfaceError)

DURABLE_TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "autoretry_for": DATABASE_GONE,
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 8,
}


def durable_task(name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``@shared_task`` with the durable options (``options`` override them)."""
    return shared_task(name=name, **{**DURABLE_TASK_OPTIONS, **options})
