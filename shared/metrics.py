"""Prometheus metrics of the API and the workers (``prometheus-client``).

Every metric is defined here, once, so that the API, the workers and the tests name the
same series. Label values are bounded: a route is the URL rule (``/api/jobs/<job_id>``),
never the raw path; a job type, a provider and a status come from fixed sets.

Several processes on one host (gunicorn's forked workers; several ``celery worker``
processes under ``make up``) share one directory named by ``PROMETHEUS_MULTIPROC_DIR``:
each process writes its own memory-mapped files there and a scrape sums them
(:func:`exposition`). The variable must be set before ``prometheus_client`` is first
imported — gunicorn's config and ``make up`` set it; a lone process (a Kubernetes worker
pod) needs none.

Two gauges cost nothing between scrapes: the queue depths and the age of the oldest
unclaimed execution are read from Redis and PostgreSQL by :class:`BacklogCollector` when
Prometheus asks, in the one process per host that serves the workers' metrics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, false, func, or_, select

from shared.models import ACTIVE_EXECUTION_STATUSES, ACTIVE_JOB_STATUSES, Execution, Job, utcnow

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE_LATEST"]

# Batch sizes: a claim takes up to a group (JOBYARD_GROUP_SIZE, 100), a flush up to
# JOBYARD_FINISH_BATCH_SIZE outcomes (500).
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 200, 500, 1000, 2000)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# --- the API ------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "jobyard_http_requests",
    "HTTP requests answered, by family, method, route (the URL rule) and status",
    ["family", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "jobyard_http_request_duration_seconds",
    "Time to answer an HTTP request, by family, method, route and status class (2xx...)",
    ["family", "method", "route", "status_class"],
    buckets=LATENCY_BUCKETS,
)
JOBS_ACCEPTED = Counter(
    "jobyard_jobs_accepted",
    "Jobs committed (accepted), by the API family that created them ('none': beat/CLI)",
    ["family"],
)
# The family of the request being answered (set by the API's hook; 'none' elsewhere).
current_family: ContextVar[str] = ContextVar("jobyard_metrics_family", default="none")

# --- the workers --------------------------------------------------------------------------
EXECUTIONS_FINISHED = Counter(
    "jobyard_executions_finished",
    "Attempts recorded, by job type, new status (success, failed, retrying; lease_lost: "
    "the lease was gone, nothing counted) and provider ('' when the type calls none)",
    ["job_type", "status", "provider"],
)
EXECUTION_RETRIES = Counter(
    "jobyard_execution_retries",
    "Failed attempts that will be tried again, by job type and provider",
    ["job_type", "provider"],
)
THROTTLE_WAITS = Counter(
    "jobyard_throttle_waits",
    "Provider throttle refusals, by provider and what followed (waited inline, or the "
    "attempt was deferred)",
    ["provider", "result"],
)
THROTTLE_WAIT_SECONDS = Counter(
    "jobyard_throttle_wait_seconds",
    "Seconds spent waiting inline for a provider's rate or concurrency limit",
    ["provider"],
)
CLAIM_BATCH_SIZE = Histogram(
    "jobyard_claim_batch_size",
    "Executions leased by one claim (one group message)",
    buckets=BATCH_BUCKETS,
)
FINISH_BATCH_SIZE = Histogram(
    "jobyard_finish_batch_size",
    "Outcomes written by one finish transaction (the batch completer's flush)",
    buckets=BATCH_BUCKETS,
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def registry_for_scrape(*extra: Collector) -> CollectorRegistry:
    """What one scrape reads: every process's files in multiprocess mode, else this
    process's own metrics; plus ``extra`` collectors (read at scrape time)."""
    if multiprocess_dir() is None:
        if not extra:
            return REGISTRY
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    else:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    for collector in extra:
        registry.register(collector)
    return registry


def exposition(*extra: Collector) -> bytes:
    """The text exposition format of :func:`registry_for_scrape`."""
    return generate_latest(registry_for_scrape(*extra))


def mark_process_dead(pid: int) -> None:
    """A process of the multiprocess directory exited: drop its live gauges (its counters
    stay: they are part of the totals)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


class _Forward(Collector):
    """The default registry's metrics, inside another registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Any]:
        return self.source.collect()


def provider_of(item: dict[str, Any]) -> str:
    """The provider an execution calls ('' when its item names no known model)."""
    from shared.ai_models import provider_for_model

    model = item.get("model")
    if not isinstance(model, str):
        return ""
    try:
        return provider_for_model(model).key
    except KeyError:
        return ""


# --- read at scrape time ------------------------------------------------------------------
def oldest_unclaimed_since(connection: Any, now: datetime) -> datetime | None:
    """Since when the longest-waiting unclaimed execution has waited (None: none waits).

    Two cheap, indexed reads. Waiting in PostgreSQL for dispatch: per unfinished job (the
    jobs' status index), its first ready row by ``seq`` (the ``ix_executions_ready``
    partial index), waiting since it was written or became due. Waiting in the broker: the
    oldest row handed out (``ix_executions_outstanding``, a few groups per worker slot)
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
        from datetime import UTC

        stamp = stamp.replace(tzinfo=UTC)
    return stamp


class BacklogCollector(Collector):
    """Queue depths (Redis list lengths), the executions' backlog and the oldest unclaimed
    execution's age, read when Prometheus scrapes. A failed read leaves its gauge out of
    that scrape rather than failing the others."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from shared.db import connection_scope
        from shared.engine import workers
        from shared.messaging.broker import queue_depth
        from shared.messaging.queues import ALL_QUEUES

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
                live = workers.live_slots(connection, now)
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
                "jobyard_worker_slots",
                "Groups the execution workers with a live heartbeat can run at once",
                value=live,
            )
            yield GaugeMetricFamily(
                "jobyard_dead_worker_processes",
                "Worker processes whose heartbeat stopped and that the recovery sweep has "
                "not yet released (their executions wait for it)",
                value=dead,
            )
        except Exception as exc:
            log.warning("metrics: backlog unavailable: %s", exc)
