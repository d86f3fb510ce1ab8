"""``bench.noop``: a task that does nothing — the benchmark's bare-Celery baseline."""

from __future__ import annotations

from celery import shared_task

from shared.messaging.queues import NOOP_TASK


@shared_task(name=NOOP_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def noop(_seq: int) -> None:
    """Do nothing, with the same delivery settings as ``executions.run``."""
