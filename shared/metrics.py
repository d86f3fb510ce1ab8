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

Some gauges cost nothing between scrapes: the queue depths and the age of the oldest
unclaimed execution are read from Redis and PostgreSQL by
:class:`shared.engine.backlog.BacklogCollector` when Prometheus asks, in the one process
per host that serves the workers' metrics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

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
# Summed over a host's live worker processes (each sets its own).
WORKER_IN_FLIGHT = Gauge(
    "jobyard_worker_executions_in_flight",
    "Executions the worker processes hold in flight (of JOBYARD_WORKER_CAPACITY each)",
    multiprocess_mode="livesum",
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
    """The provider an execution calls ('' when its item names no known model): as its
    item carries it (resolved when planned), else from its model."""
    from shared.ai_models import provider_for_model

    if isinstance(item.get("provider"), str) and item["provider"]:
        return str(item["provider"])
    model = item.get("model")
    if not isinstance(model, str):
        return ""
    try:
        return provider_for_model(model).key
    except KeyError:
        return ""
