"""Publishing tasks by name, without importing the worker.

A producer-only Celery app shares the broker, serializer and routes with the worker. The
API publishes only after its transaction has committed; a failed publish is reported to
the caller, which leaves the row for the recovery sweep rather than failing the request.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from celery import Celery

from shared import logs, tracing
from shared.messaging.labels import JobLabel, kwargsrepr_of
from shared.messaging.queues import (
    FAN_OUT_TASK,
    OUTBOX_DRAIN_TASK,
    RUN_GROUP_TASK,
    TASK_ROUTES,
)
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_apps: dict[str, Celery] = {}


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings that producers and workers must agree on."""
    return {
        "broker_url": settings.redis_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_routes": TASK_ROUTES,
        "task_ignore_result": True,
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
            "socket_timeout": settings.publish_timeout_seconds,
            "socket_connect_timeout": settings.publish_timeout_seconds,
        },
        "broker_connection_retry_on_startup": True,
        # A publish must fail fast when Redis is away: the sweep will publish later.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    }


def producer_app() -> Celery:
    """This process's producer-only Celery app, for the configured broker."""
    settings = get_settings()
    with _lock:
        app = _apps.get(settings.redis_url)
        if app is None:
            app = Celery("jobyard-publisher", set_as_current=False)
            app.conf.update(celery_config(settings))
            _apps[settings.redis_url] = app
        return app


def publish(task_name: str, args: list[Any], countdown: float | None = None) -> None:
    """Publish one task; raises when the broker cannot be reached."""
    with tracing.publishing(task_name) as trace_headers:
        producer_app().send_task(
            task_name, args=args, countdown=countdown, headers=trace_headers or None
        )


def publish_fan_outs(job_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Publish the jobs' fan-outs over one pooled broker connection.

    Returns the ids that could not be published (the broker is unreachable): the caller
    leaves those to the recovery sweep instead of failing.
    """
    pending = list(job_ids)
    if not pending:
        return []
    app = producer_app()
    # Shown in Flower with the job and, when the publisher knows it (a request does), its
    # organisation; the job type is not known here (no query for it): none is shown.
    organisation_id = logs.current().get("organisation_id")
    try:
        with app.producer_or_acquire() as producer:
            while pending:
                label = JobLabel(pending[0], _uuid_or_none(organisation_id))
                with tracing.publishing(FAN_OUT_TASK, job_id=pending[0]) as trace_headers:
                    app.send_task(
                        FAN_OUT_TASK,
                        args=[str(pending[0])],
                        producer=producer,
                        headers={**logs.message_headers(job_id=pending[0]), **trace_headers},
                        kwargsrepr=label.kwargsrepr(),
                    )
                pending.pop(0)
    except Exception:  # any broker/connection failure: the sweep dispatches them later
        log.warning("could not publish %d fan-out(s); the sweep will", len(pending), exc_info=True)
    return pending


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None


# One message: its args, its countdown, and how Flower shows its job (kwargsrepr).
Message = tuple[list[Any], float | None, str | None]


def _send_each(
    task: str, messages: list[Message], trace_parents: Sequence[str | None] | None = None
) -> int:
    """Send ``task`` once per message over one pooled broker connection; returns how many
    went before the broker failed (the rest are the caller's to hand back).
    ``trace_parents``, while tracing is on: each message's trace context (see
    shared.tracing.publishing); without it, the current one."""
    if not messages:
        return 0
    app = producer_app()
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            for args, countdown, kwargsrepr in messages:
                parent = trace_parents[sent] if trace_parents is not None else tracing.CURRENT
                with tracing.publishing(task, parent) as trace_headers:
                    app.send_task(
                        task,
                        args=args,
                        countdown=countdown,
                        producer=producer,
                        kwargsrepr=kwargsrepr,
                        headers=trace_headers or None,
                    )
                sent += 1
    except Exception:  # any broker/connection failure
        log.warning("could not publish %d %s message(s)", len(messages) - sent, task)
    return sent


def publish_groups(
    groups: Iterable[list[uuid.UUID]], trace_parents: Sequence[str | None] | None = None
) -> list[list[uuid.UUID]]:
    """Publish one ``executions.run`` per group (a :class:`~shared.messaging.labels.JobGroup`
    is shown in Flower with its job); returns the groups that could not be published (the
    broker is unreachable): the caller hands those back to dispatch. ``trace_parents``:
    each group's job's stored trace context, while tracing is on."""
    pending = list(groups)
    messages: list[Message] = [
        ([[str(i) for i in group]], None, kwargsrepr_of(group)) for group in pending
    ]
    sent = _send_each(RUN_GROUP_TASK, messages, trace_parents)
    return pending[sent:]


def publish_executions(
    countdowns: Iterable[tuple[uuid.UUID, float | None]],
    labels: Mapping[uuid.UUID, JobLabel] | None = None,
) -> list[uuid.UUID]:
    """Publish each execution alone with its own countdown (a retry, a deferred attempt),
    shown in Flower with its job when ``labels`` has it; returns the ids that could not
    be published."""
    pending = list(countdowns)
    known = labels or {}
    messages: list[Message] = []
    for execution_id, countdown in pending:
        label = known.get(execution_id)
        messages.append(([[str(execution_id)]], countdown, label.kwargsrepr() if label else None))
    sent = _send_each(RUN_GROUP_TASK, messages)
    return [execution_id for execution_id, _ in pending[sent:]]


def publish_outbox_drain() -> None:
    """Ask a worker to hand new outbox events to their consumers (best effort: the
    recovery sweep drains too)."""
    try:
        publish(OUTBOX_DRAIN_TASK, [])
    except Exception:
        log.warning("could not publish %s; the sweep will drain", OUTBOX_DRAIN_TASK)
