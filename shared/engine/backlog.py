"""What the engine holds unfinished, read when Prometheus scrapes: the queues' depths, the
executions' backlog, the oldest unclaimed execution's age, and the workers' capacity (see
:mod:`shared.metrics` for the metrics counted as things happen)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, false, func, or_, select

from shared.db import connection_scope
from shared.engine import workers
from shared.messaging.broker import queue_depth
from shared.messaging.queues import ALL_QUEUES
from shared.models import ACTIVE_EXECUTION_STATUSES, ACTIVE_JOB_STATUSES, Execution, Job, utcnow

log = logging.getLogger(__name__)


def oldest_unclaimed_since(connection: Any, now: datetime) -> datetime | None:
    """Since when the longest-waiting unclaimed execution has waited (None: none waits).

    Two cheap, indexed reads. Waiting in PostgreSQL for dispatch: per unfinished job (the
    jobs' status index), its first ready row by ``seq`` (the ``ix_executions_ready``
    partial index), waiting since it was written or became due. Waiting in the broker: the
    oldest row handed out (``ix_executions_outstanding``: what is queued or in flight)
    that no worker has leased yet.
    """
    ready = and_(
        Execution.job_id == Job.id,
        Execution.dispatched_at.is_(None),
        Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
        Execution.parked == false(),
        or_(Execution.next_attempt_at.is_(None), Execution.next_attempt_at <= now),
    )
    first_ready = (
        select(func.coalesce(Execution.next_attempt_at, Execution.created_at))
        .where(ready)
        .order_by(Execution.seq)
        .limit(1)
        .correlate(Job)
        .scalar_subquery()
    )
    in_postgresql = connection.execute(
        select(func.min(first_ready)).where(
            Job.status.in_(ACTIVE_JOB_STATUSES), Job.parked.is_(False)
        )
    ).scalar()
    in_broker = connection.execute(
        select(func.min(Execution.dispatched_at)).where(
            Execution.dispatched_at.is_not(None),
            Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
            Execution.lease_token.is_(None),
            Execution.dispatched_at <= now,
        )
    ).scalar()
    stamps = [_aware(s) for s in (in_postgresql, in_broker) if s is not None]
    return min(stamps) if stamps else None


def executions_backlog(connection: Any) -> int:
    """Pending and retrying executions of unfinished jobs (the jobs' counters)."""
    return int(
        connection.execute(
            select(func.coalesce(func.sum(Job.pending + Job.retrying), 0)).where(
                Job.status.in_(ACTIVE_JOB_STATUSES)
            )
        ).scalar()
        or 0
    )


def _aware(stamp: datetime | str) -> datetime:
    # SQLite hands an aggregate's timestamp back as text.
    if isinstance(stamp, str):
        stamp = datetime.fromisoformat(stamp)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp


class BacklogCollector(Collector):
    """Queue depths (Redis list lengths), the executions' backlog and the oldest unclaimed
    execution's age, read when Prometheus scrapes. A failed read leaves its gauge out of
    that scrape rather than failing the others."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            depths = GaugeMetricFamily(
                "jobyard_queue_depth",
                "Messages waiting in a Celery queue (Redis list lengths, every priority)",
                labels=["queue"],
            )
            for queue in ALL_QUEUES:
                depths.add_metric([queue], queue_depth(queue))
            yield depths
        except Exception as exc:  # Redis down: the scrape still reports the rest
            log.warning("metrics: queue depth unavailable: %s", exc)
        try:
            now = utcnow()
            with connection_scope() as connection:
                since = oldest_unclaimed_since(connection, now)
                backlog = executions_backlog(connection)
                capacity = sum(workers.live_capacities(connection, now))
                dead = len(workers.dead_workers(connection, now))
            yield GaugeMetricFamily(
                "jobyard_oldest_unclaimed_execution_age_seconds",
                "How long the longest-waiting unclaimed execution has waited (0: none waits)",
                value=max(0.0, (now - since).total_seconds()) if since else 0.0,
            )
            yield GaugeMetricFamily(
                "jobyard_executions_backlog",
                "Pending and retrying executions of unfinished jobs (what KEDA scales on)",
                value=backlog,
            )
            yield GaugeMetricFamily(
                "jobyard_worker_capacity",
                "Executions the execution workers with a live heartbeat can hold in flight",
                value=capacity,
            )
            yield GaugeMetricFamily(
                "jobyard_dead_worker_processes",
                "Worker processes whose heartbeat stopped and that the recovery sweep has "
                "not yet released (their executions wait for it)",
                value=dead,
            )
        except Exception as exc:
            log.warning("metrics: backlog unavailable: %s", exc)
