"""Traces across the real processes: the API (gunicorn, as ``make up`` runs it) and a
worker export over OTLP/HTTP to a receiver in this test, and one Mentionlab trigger makes
one trace from its request to each call the OpenAI provider makes to a loopback OpenAI.
One execution a group, and one group in the broker at a time: the fan-out's fill hands
out the first group, and the worker's refills the others, outside any task of the job."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from shared.models import Job
from tests.fakes import FakeOpenAI
from tests.fakes.otlp import OtlpReceiver, ReceivedSpan
from tests.support import (
    Tenant,
    WorkerProcess,
    job_row,
    make_tenant,
    running_api,
    unexpected_errors,
    wait_for_job,
)

CALLS = 3  # queries, each an execution, each a provider call


def test_one_trace_runs_from_the_request_to_each_provider_call(tmp_path: Path) -> None:
    tenant = make_tenant(n_queries=CALLS)
    with OtlpReceiver() as receiver, FakeOpenAI() as openai:
        openai_url = openai.url
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans out at once, not every 5 s
            "JOBYARD_SIMULATE": "false",
            "OPENAI_API_KEY": openai.api_key,
            "OPENAI_BASE_URL": openai.base_url,
            "JOBYARD_GROUP_SIZE": "1",
            "JOBYARD_DISPATCH_QUEUE_GROUPS": "1",
        }
        # The worker starts beside the API, not after it: both take seconds to start.
        worker = WorkerProcess(env, concurrency=4, log_path=tmp_path / "worker.log")
        try:
            with running_api(tmp_path, **env) as base_url:
                worker.wait_ready()
                spans = trigger_and_receive(base_url, tenant, openai, receiver)
        finally:
            worker.stop()
    errors = unexpected_errors(worker.log_path.read_bytes())
    assert not errors, "the worker logged errors:\n" + "\n".join(errors[:20])
    provider_calls = [s for s in spans if s.kind == "CLIENT" and openai_url in _url(s)]
    assert len(provider_calls) == CALLS

    [request] = [
        s for s in spans if s.kind == "SERVER" and "/api/jobs/trigger" in s.name + str(s.attributes)
    ]
    assert request.service == "jobyard-api"
    by_id = {s.span_id: s for s in spans}
    # The request's statements are its children (SQLAlchemy's instrumentation).
    statements = [
        s for s in spans if s.parent_id == request.span_id and "db.system" in s.attributes
    ]
    assert any(s.name.startswith("INSERT") for s in statements), [s.name for s in statements]

    def chain(span: ReceivedSpan) -> list[ReceivedSpan]:
        """The span and its ancestors, the root last (each parent received)."""
        ancestors = [span]
        while ancestors[-1].parent_id is not None:
            parent = by_id.get(ancestors[-1].parent_id)
            assert parent is not None, f"{ancestors[-1].name}'s parent was not exported"
            ancestors.append(parent)
        return ancestors

    for call in provider_calls:
        assert call.trace_id == request.trace_id
        assert [(s.service, s.kind, s.name) for s in reversed(chain(call))] == [
            ("jobyard-api", "SERVER", request.name),
            ("jobyard-api", "PRODUCER", "apply_async/jobs.fan_out"),
            ("jobyard-worker", "CONSUMER", "run/jobs.fan_out"),
            ("jobyard-worker", "PRODUCER", "apply_async/executions.run"),
            ("jobyard-worker", "CONSUMER", "run/executions.run"),
            ("jobyard-worker", "INTERNAL", "execute/ai_queries"),
            ("jobyard-worker", "CLIENT", call.name),
        ]
        job_id = chain(call)[1].attributes["jobyard.job_id"]

    # The job keeps its fan-out's context: every group is published under it.
    job: Job = job_row(uuid.UUID(job_id))
    fan_out = next(s for s in spans if s.name == "run/jobs.fan_out")
    assert job.traceparent is not None
    assert job.traceparent.split("-")[1:3] == [fan_out.trace_id, fan_out.span_id]


def trigger_and_receive(
    base_url: str, tenant: Tenant, openai: FakeOpenAI, receiver: OtlpReceiver
) -> list[ReceivedSpan]:
    """Trigger an execution per query (one model, one run) through the API, wait for the
    job to complete and for each provider call's span to arrive; every span."""
    response = httpx.post(
        f"{base_url}/api/jobs/trigger",
        headers=tenant.headers(),
        json={"aiModels": ["gpt-4.1-mini"], "executionCount": 1},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert wait_for_job(response.json()["id"], timeout=30).status == "completed"
    assert len(openai.requests) == CALLS
    openai_url = openai.url
    return receiver.wait_for(
        lambda spans: sum(s.kind == "CLIENT" and openai_url in _url(s) for s in spans) == CALLS,
        timeout=20,
    )


def _url(span: ReceivedSpan) -> str:
    return str(span.attributes.get("url.full") or span.attributes.get("http.url") or "")
