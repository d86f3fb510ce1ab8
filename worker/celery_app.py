"""The Celery application of the worker and beat processes (``celery -A worker ...``).

It never imports the API. Settings that make delivery safe: late acks with rejection on
worker loss (a killed worker's task is redelivered), one message per pool thread (a
message is claimed as soon as it is received, so a killed worker holds nothing unleased),
results ignored, JSON only, and one queue per kind of work.

A process that consumes the ``executions`` queue starts the execution runtime when it is
ready (event loop, batch completer, heartbeat, capacity; see :mod:`worker.runtime`): it
holds up to ``JOBYARD_WORKER_CAPACITY`` executions in flight, and its pool threads are
the claimers that fill it. A warm shutdown stops the claimers first, then drains.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from shared import logs, tracing
from shared.db import dispose_engine, use_worker_connections
from shared.engine import job_types
from shared.messaging.publisher import celery_config
from shared.messaging.queues import (
    EXECUTIONS_QUEUE,
    MAINTENANCE_QUEUE,
    RECOVERY_SWEEP_TASK,
    SCHEDULE_TICK_TASK,
)
from shared.settings import get_settings
from worker.broker import TRANSPORT

log = logging.getLogger(__name__)


def create_celery_app() -> Celery:
    """Build the worker's Celery app from settings, with every installed job type
    (a job type that cannot be loaded stops the start, naming it)."""
    job_types.discover()
    settings = get_settings()
    app = Celery(
        "jobyard",
        include=[
            "worker.tasks.fanout",
            "worker.tasks.executions",
            "worker.tasks.recovery",
            "worker.tasks.schedules",
            "worker.tasks.outbox",
            "worker.tasks.bench",
        ],
    )
    app.conf.update(celery_config(settings))
    app.conf.update(
        broker_transport=TRANSPORT,  # kombu's Redis transport, hardened (worker.broker)
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=MAINTENANCE_QUEUE,
        task_create_missing_queues=True,
        # The thread pool cannot kill a running task (Celery raises NotImplementedError on
        # reconnect when this is on). Nothing needs killing: an attempt whose ack is lost
        # finishes under its lease, and a redelivered duplicate is dropped by the claim.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_send_task_events=settings.task_events,  # Flower shows tasks live
        task_send_sent_event=False,
        beat_schedule={
            "recovery-sweep": {
                "task": RECOVERY_SWEEP_TASK,
                "schedule": settings.sweep_interval_seconds,
                "options": {"expires": periodic_expiry(settings.sweep_interval_seconds)},
            },
            "schedules-tick": {
                "task": SCHEDULE_TICK_TASK,
                "schedule": settings.schedule_tick_seconds,
                "options": {"expires": periodic_expiry(settings.schedule_tick_seconds)},
            },
        },
    )
    return app


def periodic_expiry(interval: float) -> float:
    """How long a periodic task's message stays worth running: a few intervals, and at
    least 10 s. After an outage the backlog of ticks expires instead of running all at
    once; but a busy maintenance queue that takes a second or two to reach a tick must not
    see every tick expire (with a 1 s interval, an expiry of one interval did)."""
    return max(3 * interval, 10.0)


app = create_celery_app()


@setup_logging.connect
def _configure_logging(loglevel: Any = None, **_: Any) -> None:
    """Our handler instead of Celery's: JOBYARD_LOG_FORMAT (json by default), with each
    line's ids (see shared.logs). Connected, this signal stops Celery configuring logs."""
    logs.configure_logging(get_settings().log_format, loglevel or logging.INFO)


# The ids bound around each task, by pool thread and task id (a duplicated message may run
# under the same task id in two threads at once; a context is reset in its own thread).
_task_tokens: dict[tuple[int, str], Any] = {}


@task_prerun.connect
def _bind_task_ids(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """The task's id and name, and the ids its message carries (a fan-out's organisation
    and job), on every line the task logs."""
    carried = getattr(task.request, logs.HEADER, None) if task is not None else None
    if carried is None and task is not None:
        carried = (getattr(task.request, "headers", None) or {}).get(logs.HEADER)
    ids = carried if isinstance(carried, dict) else {}
    known = {k: v for k, v in ids.items() if k in ("organisation_id", "job_id")}
    if task_id is not None:
        _task_tokens[threading.get_ident(), task_id] = logs.bind(
            task_id=task_id, task=getattr(task, "name", None), **known
        )


@task_postrun.connect
def _unbind_task_ids(task_id: str | None = None, **_: Any) -> None:
    key = (threading.get_ident(), task_id) if task_id is not None else None
    token = _task_tokens.pop(key, None) if key is not None else None
    if token is not None:
        logs.reset(token)


@worker_init.connect
def _start_tracing(sender: Any = None, **_: Any) -> None:
    """Traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set (shared.tracing): before the first
    query, as the worker runs executions or fan-outs and maintenance (the dispatcher)."""
    consumed = getattr(getattr(sender, "app", None), "amqp", None)
    queues = set(consumed.queues.consume_from or {}) if consumed is not None else set()
    tracing.setup("worker" if not queues or EXECUTIONS_QUEUE in queues else "dispatcher")


@beat_init.connect
def _start_beat_tracing(**_: Any) -> None:
    tracing.setup("beat")


@worker_init.connect
def _tune_worker_connections(**_: Any) -> None:
    """Only a running worker trades flush-waits and pings for speed (see shared.db); and
    it loads every job type's executor before taking work, so a missing one stops it."""
    use_worker_connections()
    job_types.load_executors()


@worker_process_init.connect
def _dispose_inherited_engine(**_: Any) -> None:
    """A forked child must not reuse the parent's pooled connections."""
    dispose_engine()


@worker_ready.connect
def _start_execution_runtime(sender: Any = None, **_: Any) -> None:
    """Start the execution runtime where executions are run; serve the host's metrics."""
    from worker import metrics_server

    metrics_server.start()
    if tracing.enabled():  # said here: Celery sets its logging up after worker_init
        log.info("tracing on: spans of %s to the OTLP endpoint", tracing.service_name())
    queues = {q.name for q in getattr(sender.task_consumer, "queues", [])} if sender else set()
    from worker.runtime import start_presence, start_runtime

    if EXECUTIONS_QUEUE in queues:
        from worker.runtime import group_events

        group_events.attach(sender)  # groups' ends go out as this consumer's task events
        start_runtime(get_settings().worker_capacity)
    else:
        start_presence()


@worker_shutting_down.connect
def _stop_claiming(**_: Any) -> None:
    """SIGTERM: claim nothing more (claimers waiting for room give their groups back to
    dispatch), so Celery's pool stops at once; the calls in flight drain afterwards."""
    from worker.runtime import stop_claiming

    stop_claiming()


@worker_shutdown.connect
def _stop_execution_runtime(**_: Any) -> None:
    from worker import metrics_server
    from worker.runtime import stop_runtime

    stop_runtime()
    metrics_server.stop()
