"""Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then nothing of the SDK is
loaded, nothing is instrumented, and neither a job nor a message carries a context. Each
case runs in a process of its own, as the API and a worker start (the tracer provider
and the instrumentations are process-wide)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import Any

from tests.fakes.otlp import OtlpReceiver
from tests.support import ROOT

# What a process that starts the API and the worker's tracing hook shows of it.
PROBE = """
import json, sys, uuid
import aiohttp
from celery import signals
from opentelemetry import trace
from api import create_app
from shared import tracing
from shared.engine.jobs import new_job
from worker.celery_app import _start_tracing

app = create_app()
_start_tracing(sender=None)
with trace.get_tracer("probe").start_as_current_span("a request"):
    job = new_job(organisation_id=uuid.uuid4(), job_type="ai_queries", total=1, payload={})
    with tracing.publishing("jobs.fan_out") as headers:
        pass
loaded = sorted(
    name for name in sys.modules
    # (redis-py imports opentelemetry.sdk.metrics for metrics of its own it offers; inert)
    if name.startswith(("opentelemetry.sdk.trace", "opentelemetry.instrumentation", "opentelemetry.exporter"))
)
trace.get_tracer_provider().force_flush() if tracing.enabled() else None
print(json.dumps({
    "enabled": tracing.enabled(),
    "kind": tracing.kind(),
    "loaded": loaded,
    "traceparent": job.traceparent,
    "headers": headers,
    "flask": bool(getattr(app, "_is_instrumented_by_opentelemetry", False)),
    "aiohttp": hasattr(aiohttp.ClientSession.__init__, "__wrapped__"),
    "celery_publish_hooks": len(signals.before_task_publish.receivers),
    "celery_run_hooks": len(signals.task_prerun.receivers),
}))
"""


def probe(**env: str) -> dict[str, Any]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@functools.cache
def probe_off() -> dict[str, Any]:
    return probe()


def test_without_the_endpoint_nothing_is_set_up() -> None:
    off = probe_off()
    assert off["enabled"] is False
    assert off["kind"] is None
    assert off["loaded"] == []  # no tracing SDK, exporter or instrumentation imported
    assert off["traceparent"] is None
    assert off["headers"] == {}
    assert off["flask"] is False
    assert off["aiohttp"] is False


def test_with_the_endpoint_each_part_is_set_up(tmp_path: Any) -> None:
    with OtlpReceiver() as receiver:
        on = probe(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        exported = receiver.wait_for(lambda spans: len(spans) >= 2, timeout=10)
    assert on["enabled"] is True
    assert on["kind"] == "api"  # the first setup of the process names it
    assert "opentelemetry.sdk.trace" in on["loaded"]
    assert on["flask"] is True
    assert on["aiohttp"] is True
    # The job and the message carry the current trace.
    [request] = [s for s in exported if s.name == "a request"]
    assert on["traceparent"].split("-")[1:3] == [request.trace_id, request.span_id]
    [publish] = [s for s in exported if s.name == "apply_async/jobs.fan_out"]
    assert publish.parent_id == request.span_id
    assert on["headers"]["traceparent"].split("-")[1:3] == [publish.trace_id, publish.span_id]
    assert {s.service for s in exported} == {"jobyard-api"}
    # Celery's task spans are the instrumentation's; its publish hooks are not connected
    # (the publisher makes those spans: see shared.tracing).
    off = probe_off()
    assert on["celery_run_hooks"] == off["celery_run_hooks"] + 1
    assert on["celery_publish_hooks"] == off["celery_publish_hooks"]
