"""Traces (OpenTelemetry): one trace from the request that creates a job to each provider
call of its executions. Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Each process calls :func:`setup` where it starts (the API's ``create_app``, the worker's
``worker_init``, beat's ``beat_init``, the sender's ``main``) with its kind: ``api``,
``worker``, ``dispatcher``, ``sender`` or ``beat`` (the service name ``jobyard-<kind>``
unless ``OTEL_SERVICE_NAME`` says otherwise). With the variable unset it returns at
once: nothing of the SDK is imported, no instrumentation is installed, and every helper
below is a check of one flag. The standard ``OTEL_*`` variables configure the rest
(``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_HEADERS``...); spans go out
over OTLP/HTTP (protobuf), e.g. to a collector's port 4318.

The official instrumentations do the parts they can: Flask (the request span), Celery
(a task's ``run/<task>`` span, its parent read from the message), SQLAlchemy (statements)
and the aiohttp client (the providers' and webhooks' HTTP calls). jobyard carries the
context where they cannot:

- **Publishing**: every message is published by name from a producer-only app
  (:mod:`shared.messaging.publisher`); the Celery instrumentation's publish hooks find no
  task for a name its process does not register, and then leave their span open and its
  context attached (opentelemetry-python-contrib's celery ``attach_context`` skips an
  unknown task). So they are disconnected, and the publisher wraps each message in a
  ``apply_async/<task>`` PRODUCER span of its own (:func:`publishing`), its context in
  the message's headers.
- **The job's context is stored with the job** (``jobs.traceparent``): groups are
  published by dispatch long after the request, from whichever process has room, so
  each group is published as a child of its job's stored context, never of whatever
  happens to be current. A job takes the request's context when it is created
  (:func:`current_traceparent`), then its fan-out's, which writes its executions: the
  chain reads request → fan-out → group → execution → provider call.
- **The event loop**: a group's executions run on the worker's asyncio loop after its
  task returned; the task's context is carried into the coroutine (:func:`current_context`
  then :func:`execution_span`).

Database statements are traced inside a trace only: the worker's heartbeat, completer
and refiller threads would otherwise make one trace per statement.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask
    from opentelemetry.context import Context

log = logging.getLogger(__name__)

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACER_NAME = "jobyard"

_lock = threading.Lock()
_enabled = False
_kind: str | None = None
_service: str | None = None


def requested() -> bool:
    """Whether this process is asked to trace (``OTEL_EXPORTER_OTLP_ENDPOINT`` is set)."""
    return bool(os.environ.get(ENDPOINT_VARIABLE, "").strip())


def enabled() -> bool:
    """Whether :func:`setup` turned tracing on in this process."""
    return _enabled


def kind() -> str | None:
    """The kind of process :func:`setup` traced as (None while off)."""
    return _kind


def service_name() -> str | None:
    """The service this process's spans are of (None while off)."""
    return _service


def setup(process_kind: str) -> bool:
    """Turn tracing on for this process when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (once;
    later calls change nothing); returns whether it is on."""
    global _enabled, _kind, _service
    if _enabled or not requested():
        return _enabled
    with _lock:
        if _enabled:
            return True
        _service = _install(process_kind)
        _kind = process_kind
        _enabled = True
    log.info("tracing on: spans of %s to %s", _service, os.environ[ENDPOINT_VARIABLE])
    return True


def _install(process_kind: str) -> str:
    """Set the SDK and the instrumentations up; returns the service name."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"jobyard-{process_kind}"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)

    celery = CeleryInstrumentor()
    celery.instrument(tracer_provider=provider)
    _disconnect_publish_hooks(celery)
    # Every engine is created by sqlalchemy.create_engine (shared.db reads it from the
    # module at each call), which this wraps; statements outside a trace make no span.
    # The instrumentation declares SQLAlchemy < 2.1 (its last check, before 2.1 was out)
    # and otherwise refuses to install: what it uses is Core's engine events
    # (before/after_cursor_execute, handle_error), the same in 2.1.
    # tests/e2e/test_traces.py checks that statements are traced.
    SQLAlchemyInstrumentor().instrument(
        tracer_provider=_ChildSpansOnly(provider), skip_dep_check=True
    )
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    return str(resource.attributes[SERVICE_NAME])


def _disconnect_publish_hooks(instrumentor: Any) -> None:
    """The publisher makes the PRODUCER spans itself (see the module's docstring)."""
    from celery import signals

    signals.before_task_publish.disconnect(instrumentor._trace_before_publish)
    signals.after_task_publish.disconnect(instrumentor._trace_after_publish)


def instrument_flask(app: Flask) -> None:
    """A span per request (health checks apart), when tracing is on."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor.instrument_app(app, excluded_urls="healthz")


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to store with a job; None when off or
    outside a trace."""
    if not _enabled:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def current_context() -> Context | None:
    """The current context, to carry into a coroutine that another thread runs; None when
    off."""
    if not _enabled:
        return None
    from opentelemetry import context

    return context.get_current()


# What a publish's parent is when none is named: the current context.
CURRENT = "current"


@contextlib.contextmanager
def publishing(
    task_name: str, parent: str | None = CURRENT, **attributes: Any
) -> Iterator[dict[str, str]]:
    """A PRODUCER span around one message's publish, as a child of ``parent`` (a stored
    ``traceparent``; None: a trace of its own; :data:`CURRENT`: the current context);
    yields the headers that carry it to the task. Off: no span, no headers."""
    if not _enabled:
        yield {}
        return
    from opentelemetry import propagate, trace
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if parent == CURRENT:
        parent_context: Context | None = None
    elif parent is None:
        parent_context = Context()
    else:
        parent_context = TraceContextTextMapPropagator().extract({"traceparent": parent})
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"apply_async/{task_name}",
        context=parent_context,
        kind=trace.SpanKind.PRODUCER,
        attributes={"celery.task_name": task_name, **_text_values(attributes)},
    ):
        headers: dict[str, str] = {}
        propagate.inject(headers)
        yield headers


@contextlib.contextmanager
def execution_span(parent: Context | None, name: str, **attributes: Any) -> Iterator[None]:
    """A span for work carried out of its task (a group's executions on the event loop),
    as a child of ``parent`` (:func:`current_context` where the work was handed over);
    the provider calls made inside are its children. None: nothing."""
    if parent is None:
        yield
        return
    from opentelemetry import trace

    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(name, context=parent, attributes=_text_values(attributes)):
        yield


def _text_values(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        f"jobyard.{name}": value if isinstance(value, int | float | bool) else str(value)
        for name, value in attributes.items()
        if value is not None
    }


class _ChildSpansOnly:
    """A tracer provider whose tracers start a span only inside a trace (a request, a
    task): a statement outside one makes no trace of its own."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return _ChildSpansOnlyTracer(self._provider.get_tracer(*args, **kwargs))


class _ChildSpansOnlyTracer:
    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> Any:
        from opentelemetry import trace

        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    @contextlib.contextmanager
    def start_as_current_span(
        self, name: str, context: Any = None, *args: Any, **kwargs: Any
    ) -> Iterator[Any]:
        from opentelemetry import trace

        if not trace.get_current_span(context).get_span_context().is_valid:
            yield trace.INVALID_SPAN
            return
        with self._tracer.start_as_current_span(name, context, *args, **kwargs) as span:
            yield span
