"""No-op tasks: the benchmark's bare-Celery baselines."""

from __future__ import annotations

from celery import shared_task

from shared.messaging.queues import NOOP_EARLY_ACK_TASK, NOOP_TASK


@shared_task(name=NOOP_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def noop(_seq: int) -> None:
    """Do nothing, with the same delivery settings as ``executions.run``."""


@shared_task(name=NOOP_EARLY_ACK_TASK, acks_late=False, ignore_result=True)
def noop_early_ack(_seq: int) -> None:
    """Do nothing, acknowledged on receipt: Celery at its fastest."""
