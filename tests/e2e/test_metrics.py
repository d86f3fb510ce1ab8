"""The workers' metrics: a real worker runs a job and its metrics endpoint shows it; two
worker processes of one host sum in multiprocess mode; the scrape-time gauges read Redis
and PostgreSQL as they are."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import redis
from flask.testing import FlaskClient
from sqlalchemy import func, select

from shared.db import connection_scope, session_scope
from shared.engine.backlog import BacklogCollector, oldest_unclaimed_since
from shared.engine.jobs import new_job
from shared.messaging.queues import ALL_QUEUES, FANOUT_QUEUE
from shared.models import Execution, utcnow
from tests.metrics_support import has, scrape, value
from tests.support import ROOT, Tenant, job_row, running_worker, wait_for_job

FINISHED = "jobyard_executions_finished_total"
AGE = "jobyard_oldest_unclaimed_execution_age_seconds"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def trigger(client: FlaskClient, tenant: Tenant, runs: int) -> str:
    """One model over the tenant's 3 queries, ``runs`` times: 3 x runs executions."""
    response = client.post(
        "/api/jobs/trigger",
        headers=tenant.headers(),
        json={"aiModels": ["gpt-4.1-mini"], "executionCount": runs},
    )
    assert response.status_code == 201, response.json
    job_id: str = response.json["id"]
    return job_id


def metrics_env(directory: Path, port: int) -> dict[str, object]:
    directory.mkdir(exist_ok=True)
    return {
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "JOBYARD_WORKER_METRICS_PORT": port,
        "JOBYARD_SIMULATED_LATENCY_MS": 5,
    }


def waiting_execution(tenant: Tenant, job_type: str, handed_out_ago: float) -> uuid.UUID:
    """A job whose one execution was handed to the broker ``handed_out_ago`` seconds ago
    and never claimed (its message is lost: only the recovery sweep would find it)."""
    now = utcnow()
    with session_scope() as session:
        job = new_job(organisation_id=tenant.org_id, job_type=job_type, total=1, payload={})
        job.fanned_out_at = now
        session.add(job)
        session.flush()
        session.add(
            Execution(
                job_id=job.id,
                seq=0,
                item_key="waiting",
                item={"model": "gpt-4.1-mini"},
                dispatched_at=now - timedelta(seconds=handed_out_ago),
                created_at=now - timedelta(seconds=handed_out_ago),
            )
        )
        job_id: uuid.UUID = job.id
    return job_id


def test_a_worker_reports_its_executions_batches_queues_and_the_oldest_wait(
    client: FlaskClient, tenant: Tenant, tmp_path: Path
) -> None:
    port = free_port()
    # 6 calls at once against 20 calls a second: all but the first wait for their slot.
    env = {
        **metrics_env(tmp_path / "metrics", port),
        "JOBYARD_PROVIDER_RATE_LIMITS": '{"openai": "20/second"}',
    }
    with running_worker(tmp_path, **env):
        job_id = trigger(client, tenant, runs=2)
        job = wait_for_job(job_id)
        assert (job.status, job.success) == ("completed", 6)
        text = scrape(port)
        job_type = job_row(job_id).type
        assert value(text, FINISHED, job_type=job_type, status="success", provider="openai") == 6
        assert value(text, FINISHED, status="failed") == 0
        assert value(text, "jobyard_throttle_waits_total", provider="openai", result="waited") >= 1
        assert value(text, "jobyard_throttle_wait_seconds_total", provider="openai") > 0
        assert value(text, "jobyard_throttle_waits_total", result="deferred") == 0
        # Every execution leased once and written once, in batches.
        assert value(text, "jobyard_claim_batch_size_sum") == 6
        assert value(text, "jobyard_claim_batch_size_count") >= 1
        assert value(text, "jobyard_finish_batch_size_sum") == 6
        assert 1 <= value(text, "jobyard_finish_batch_size_count") <= 6
        for queue in ALL_QUEUES:
            assert has(text, "jobyard_queue_depth", queue=queue)
        assert value(text, AGE) == 0  # nothing waits
        assert value(text, "jobyard_worker_capacity") == 10_000  # JOBYARD_WORKER_CAPACITY
        assert value(text, "jobyard_worker_executions_in_flight") == 0  # all given back
        assert value(text, "jobyard_dead_worker_processes") == 0

        waiting_execution(tenant, job_type, handed_out_ago=30)
        text = scrape(port)
        assert 29 <= value(text, AGE) < 60
        assert value(text, "jobyard_executions_backlog") == 1


def test_retries_are_counted_once_per_attempt_tried_again(
    client: FlaskClient, tenant: Tenant, tmp_path: Path
) -> None:
    """A provider failing 60% of calls (retryable): every retry the worker reports is an
    attempt the database records beyond each execution's first."""
    port = free_port()
    env = {
        **metrics_env(tmp_path / "metrics", port),
        "JOBYARD_SIMULATED_FAILURE_RATE": 0.6,
        "JOBYARD_RETRY_BACKOFF_BASE_SECONDS": 0.05,
    }
    with running_worker(tmp_path, **env):
        job_id = trigger(client, tenant, runs=3)
        job = wait_for_job(job_id)
        text = scrape(port)
    assert job.success + job.failed == 9
    with session_scope() as session:
        attempts = session.scalar(
            select(func.sum(Execution.attempts)).where(Execution.job_id == uuid.UUID(job_id))
        )
    retries = value(text, "jobyard_execution_retries_total", provider="openai")
    assert retries >= 1
    assert retries == attempts - 9
    assert value(text, FINISHED, status="retrying") == retries
    assert value(text, FINISHED, status="success") == job.success
    assert value(text, FINISHED, status="failed") == job.failed


def test_two_worker_processes_of_a_host_sum(
    client: FlaskClient, tenant: Tenant, tmp_path: Path
) -> None:
    """Worker A serves the host's metrics and runs a job; worker B starts (the port is
    taken: it only writes its files), A stops, B runs a job and takes the port over: the
    totals are A's and B's, summed."""
    port = free_port()
    env = metrics_env(tmp_path / "metrics", port)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ExitStack() as worker_b:
        worker_a = ExitStack()
        with worker_a:
            worker_a.enter_context(running_worker(tmp_path / "a", **env))
            first = trigger(client, tenant, runs=1)
            assert wait_for_job(first).success == 3
            assert value(scrape(port), FINISHED, status="success") == 3
            worker_b.enter_context(running_worker(tmp_path / "b", **env))
        # A is gone (warm shutdown): only B runs the second job.
        second = trigger(client, tenant, runs=2)
        assert wait_for_job(second).success == 6
        deadline = time.monotonic() + 20
        while True:  # B takes the port over within a few seconds
            try:
                text = scrape(port, timeout=2)
                if value(text, FINISHED, status="success") == 9:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "worker B never served the summed metrics"
            time.sleep(0.5)
        assert value(text, "jobyard_finish_batch_size_sum") == 9
        assert value(text, "jobyard_claim_batch_size_sum") == 9


def test_queue_depth_and_oldest_wait_are_read_at_scrape_time(
    tenant: Tenant, empty_broker: redis.Redis
) -> None:
    """No worker: a job's executions wait in PostgreSQL for dispatch, messages in Redis."""
    collector = BacklogCollector()

    def gauges() -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("queue", "")): s.value
            for family in collector.collect()
            for s in family.samples
        }

    assert gauges()[(AGE, "")] == 0
    assert gauges()[("jobyard_queue_depth", FANOUT_QUEUE)] == 0
    empty_broker.rpush(FANOUT_QUEUE, b"a", b"b", b"c")
    empty_broker.rpush(f"{FANOUT_QUEUE}\x06\x163", b"d")  # a priority step's list
    assert gauges()[("jobyard_queue_depth", FANOUT_QUEUE)] == 4

    now = utcnow()
    with session_scope() as session:
        job = new_job(organisation_id=tenant.org_id, job_type="ai_queries", total=3, payload={})
        session.add(job)
        session.flush()
        for seq, ago in enumerate((100, 50, 10)):
            session.add(
                Execution(
                    job_id=job.id,
                    seq=seq,
                    item_key=str(seq),
                    item={},
                    created_at=now - timedelta(seconds=ago),
                )
            )
    with connection_scope() as connection:
        since = oldest_unclaimed_since(connection, utcnow())
    assert since is not None
    assert 99 <= (utcnow() - since).total_seconds() < 130
    assert 99 <= gauges()[(AGE, "")] < 130
    assert gauges()[("jobyard_executions_backlog", "")] == 3


def test_flower_metrics_ask_for_its_basic_auth(tmp_path: Path) -> None:
    """Flower's own /metrics answers 401 without Flower's credentials, 200 with them."""
    port = free_port()
    log_path = tmp_path / "flower.log"
    with log_path.open("wb") as log:
        flower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "worker",
                "flower",
                "--conf=worker/flowerconfig.py",
                f"--port={port}",
            ],
            cwd=ROOT,
            env={**os.environ, "FLOWER_USER": "ops", "FLOWER_PASSWORD": "s3cret-pw"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{url}/healthcheck", timeout=2).close()
                    break
                except OSError:
                    assert flower.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.3)

            def status(credentials: str | None) -> int:
                request = urllib.request.Request(f"{url}/metrics")
                if credentials is not None:
                    token = base64.b64encode(credentials.encode()).decode()
                    request.add_header("Authorization", f"Basic {token}")
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        code: int = response.status
                        return code
                except urllib.error.HTTPError as exc:
                    return exc.code

            assert status(None) == 401
            assert status("ops:wrong") == 401
            assert status("ops:s3cret-pw") == 200
        finally:
            flower.terminate()
            flower.wait(10)
