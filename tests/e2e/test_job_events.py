"""Live progress: ``GET /api/jobs/{id}/events`` (server-sent events) and ``jobyard watch``.

The streams are read from the real gunicorn while a real worker runs the job; the
heartbeat (the stream's only re-read of the job row) is set far beyond the test, so every
change a client sees came through the Redis pub/sub the engine publishes after commit.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

import shared.cli
from shared.cli import cli
from shared.db import connection_scope, session_scope
from shared.engine import progress
from shared.engine.counters import move_counters
from shared.models import Job, utcnow
from shared.settings import get_settings, reset_settings_cache
from shared.watch import Event, parse_events
from tests.support import Tenant, make_tenant, running_api, running_worker, wait_for_job

NO_RESYNC = {"JOBYARD_SSE_HEARTBEAT_SECONDS": "600"}
# 5 queries x 2 models x 12 = 120 executions, 40 ms each, 2 groups of 5 at a time: about
# 2.5 s of work, flushed in many batches.
SLOW_JOB = {"aiModels": ["gpt-4.1-mini", "claude-haiku-4-5"], "executionCount": 12}
# Ten calls in flight at 40 ms: the job runs for seconds, long enough to be followed.
SLOW_WORKER = {
    "JOBYARD_SIMULATED_LATENCY_MS": 40,
    "JOBYARD_GROUP_SIZE": 5,
    "JOBYARD_WORKER_CAPACITY": 10,
}


def trigger(base_url: str, tenant: Tenant, body: dict[str, Any] = SLOW_JOB) -> str:
    reply = httpx.post(f"{base_url}/api/jobs/trigger", headers=tenant.headers(), json=body)
    assert reply.status_code == 201, reply.text
    job_id: str = reply.json()["id"]
    return job_id


def read_stream(
    base_url: str, job_id: str, headers: dict[str, str], arrivals: list[float] | None = None
) -> list[Event]:
    """Every event until the server closes the stream (and when each one arrived)."""
    url = f"{base_url}/api/jobs/{job_id}/events"
    events = []
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=60)) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for event in parse_events(r.iter_lines()):
            events.append(event)
            if arrivals is not None:
                arrivals.append(time.monotonic())
    return events


def done(event: Event) -> int:
    return int(event.data["successExecutions"] + event.data["failedExecutions"])


def test_a_stream_follows_a_running_job_to_its_final_event(tmp_path: Path) -> None:
    tenant = make_tenant(n_queries=5)
    with (
        running_api(tmp_path, **NO_RESYNC) as base_url,
        running_worker(tmp_path, concurrency=2, **SLOW_WORKER),
    ):
        job_id = trigger(base_url, tenant)
        arrivals: list[float] = []
        events = read_stream(base_url, job_id, tenant.headers(), arrivals)
    # Streamed as they happen, not buffered to the end: the first event came well before
    # the last (the job runs for seconds).
    assert arrivals[-1] - arrivals[0] > 1.0, arrivals
    names = [e.name for e in events]
    assert names[-1] == "end" and names.count("end") == 1, names
    assert set(names[:-1]) == {"progress"}
    final = events[-1].data
    assert final["id"] == job_id and final["status"] == "completed"
    assert final["successExecutions"] == final["totalExecutions"] == 120
    # The first event is the state at subscription: nothing or little done yet.
    assert events[0].data["status"] in ("pending", "processing") and done(events[0]) < 120
    counts = [done(e) for e in events]
    assert counts == sorted(counts), counts  # never backwards
    # Several changes while it ran, each from a published flush (no re-read was due).
    running = {c for c in counts if 0 < c < 120}
    assert len(running) >= 3, counts
    for event in events:
        data = event.data
        assert data["pendingExecutions"] + data["retryingExecutions"] + done(event) == 120


def test_another_tenants_job_is_404_and_the_owner_gets_the_end_at_once(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant, tmp_path: Path
) -> None:
    reply = client.post("/api/jobs/trigger", headers=tenant.headers(), json=SLOW_JOB)
    job_id = reply.json["id"]
    for headers in (other_tenant.headers(project=False), other_tenant.headers(bearer=True)):
        # Unbuffered: were the check gone, a stream would never end.
        denied = client.get(f"/api/jobs/{job_id}/events", headers=headers, buffered=False)
        assert denied.status_code == 404, denied.status_code
        assert denied.json["statusCode"] == 404 and job_id not in str(denied.json).replace(
            f"Job {job_id} not found", ""
        )
        denied.close()
    assert (
        client.get(f"/api/jobs/{uuid.uuid4()}/events", headers=tenant.headers()).status_code == 404
    )
    assert client.get(f"/api/jobs/{job_id}/events").status_code == 401
    with session_scope() as session:  # finished: the stream is its final event alone
        session.get(Job, uuid.UUID(job_id)).status = "completed"  # type: ignore[union-attr]
    reply = client.get(f"/api/jobs/{job_id}/events", headers=tenant.headers(bearer=True))
    events = list(parse_events(iter(reply.get_data(as_text=True).splitlines())))
    assert [e.name for e in events] == ["end"] and events[0].data["status"] == "completed"


@pytest.fixture
def one_stream_per_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOBYARD_SSE_MAX_STREAMS_PER_PROCESS", "1")
    reset_settings_cache()
    assert get_settings().sse_max_streams_per_process == 1
    yield
    monkeypatch.undo()
    reset_settings_cache()


def test_streams_beyond_the_process_cap_are_503_and_a_cancel_ends_a_stream(
    client: FlaskClient, tenant: Tenant, one_stream_per_process: None
) -> None:
    """A stream holds a greenlet and a Redis connection: past the cap the API answers
    503. A cancel publishes after its commit: the open stream ends."""
    job_id = client.post("/api/jobs/trigger", headers=tenant.headers(), json=SLOW_JOB).json["id"]
    stream = client.get(f"/api/jobs/{job_id}/events", headers=tenant.headers(), buffered=False)
    assert stream.status_code == 200
    busy = client.get(f"/api/jobs/{job_id}/events", headers=tenant.headers())
    assert busy.status_code == 503, busy.get_data(as_text=True)
    assert "Too many progress streams" in str(busy.json["message"])

    events: list[Event] = []
    reader = threading.Thread(
        target=lambda: events.extend(
            parse_events(line for chunk in stream.response for line in chunk.decode().split("\n"))
        )
    )
    reader.start()
    canceled = client.post(f"/api/jobs/{job_id}/cancel", headers=tenant.headers())
    assert canceled.status_code == 200, canceled.json
    reader.join(10)
    assert not reader.is_alive(), "the stream did not end after the cancel"
    stream.close()
    assert [e.name for e in events] == ["progress", "end"], events
    assert events[-1].data["status"] == "canceled"
    # The slot is back.
    again = client.get(f"/api/jobs/{job_id}/events", headers=tenant.headers())
    assert again.status_code == 200 and "event: end" in again.get_data(as_text=True)


def test_progress_is_published_after_commit_and_never_for_a_rollback(
    broker: redis.Redis, tenant: Tenant
) -> None:
    from api import create_app

    client = create_app({"TESTING": True}).test_client()
    job_id = client.post("/api/jobs/trigger", headers=tenant.headers(), json=SLOW_JOB).json["id"]
    pubsub = broker.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(progress.channel(uuid.UUID(job_id)))
    move = {("pending", "success"): 1}

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), connection_scope() as connection:
        move_counters(connection, uuid.UUID(job_id), move, utcnow())
        raise Rollback
    assert pubsub.get_message(timeout=0.5) is None
    with connection_scope() as connection:
        move_counters(connection, uuid.UUID(job_id), move, utcnow())
        # Not yet: the transaction is still open.
        assert pubsub.get_message(timeout=0.2) is None
    message = pubsub.get_message(timeout=2)
    assert message is not None
    published = progress.Snapshot.from_dict(json.loads(message["data"]))
    with session_scope() as session:
        row = session.execute(
            select(Job.success, Job.pending).where(Job.id == uuid.UUID(job_id))
        ).one()
    assert (published.success, published.pending) == tuple(row)
    assert published.success == 1
    pubsub.close()


def test_jobyard_watch_follows_a_job_and_exits_with_its_status(
    tmp_path: Path, other_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared.cli, "LOCAL_ENV", tmp_path / "none.env")  # not the checkout's
    tenant = make_tenant(n_queries=5)
    runner = CliRunner()
    with (
        running_api(tmp_path, **NO_RESYNC) as base_url,
        running_worker(tmp_path, concurrency=2, **SLOW_WORKER),
    ):
        job_id = trigger(base_url, tenant)
        result = runner.invoke(
            cli,
            ["watch", job_id],
            env={"JOBYARD_URL": base_url, "JOBYARD_API_KEY": tenant.api_key, "JOBYARD_TOKEN": ""},
        )
        assert result.exit_code == 0, result.output
        assert f"job {job_id} completed: 120/120 done, 120 succeeded, 0 failed" in result.output
        assert wait_for_job(job_id).status == "completed"

        # The JWT works too; another tenant's job is refused (exit 2, the API's message).
        denied = runner.invoke(
            cli,
            ["watch", job_id],
            env={
                "JOBYARD_URL": base_url,
                "JOBYARD_API_KEY": "",
                "JOBYARD_TOKEN": other_tenant.token,
            },
        )
        assert denied.exit_code == 2, denied.output
        assert "404" in denied.output and "not found" in denied.output

        # A job that does not complete: exit 1 with its status.
        canceled_id = trigger(base_url, tenant, {"aiModels": ["gpt-4.1-mini"], "executionCount": 1})
        httpx.post(f"{base_url}/api/jobs/{canceled_id}/cancel", headers=tenant.headers())
        job = wait_for_job(canceled_id)
        ended = runner.invoke(
            cli,
            ["watch", canceled_id],
            env={"JOBYARD_URL": base_url, "JOBYARD_API_KEY": "", "JOBYARD_TOKEN": tenant.token},
        )
        assert ended.exit_code == (0 if job.status == "completed" else 1), ended.output
        assert f"job {canceled_id} {job.status}" in ended.output


@pytest.fixture
def quick_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOBYARD_SSE_HEARTBEAT_SECONDS", "0.2")
    monkeypatch.setenv("JOBYARD_SSE_MAX_STREAM_SECONDS", "1.5")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def test_heartbeats_make_good_a_lost_publish_and_long_streams_time_out(
    client: FlaskClient, tenant: Tenant, quick_stream: None
) -> None:
    """A change that was never published (as when Redis was away at the commit) reaches
    the stream at its next heartbeat; a stream that outlives its maximum gets ``timeout``."""
    job_id = client.post("/api/jobs/trigger", headers=tenant.headers(), json=SLOW_JOB).json["id"]
    started = time.monotonic()
    text = client.get(f"/api/jobs/{job_id}/events", headers=tenant.headers()).get_data(as_text=True)
    assert 1.4 < time.monotonic() - started < 5
    assert ": heartbeat" in text
    events = list(parse_events(iter(text.splitlines())))
    assert [e.name for e in events] == ["progress", "timeout"], events

    stream = client.get(f"/api/jobs/{job_id}/events", headers=tenant.headers(), buffered=False)
    chunks = iter(stream.response)
    assert "progress" in "".join(next(chunks).decode() for _ in range(2))
    with session_scope() as session:  # behind the engine's back: nothing is published
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        job.status, job.failed, job.pending = "failed", job.total, 0
    rest = "".join(chunk.decode() for chunk in chunks)
    stream.close()
    ended = list(parse_events(iter(rest.splitlines())))
    assert ended[-1].name == "end" and ended[-1].data["status"] == "failed", rest
