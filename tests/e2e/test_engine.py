"""The engine with real worker processes: recovery after kill -9 within a minute,
duplicate messages dropped, two workers sharing a job, and a small job not waiting for a
big one."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from shared.db import connection_scope, session_scope
from shared.engine.claim import claim_group
from shared.engine.fanout import fan_out_job
from shared.engine.finish import finish_batch
from shared.engine.outcomes import Outcome
from shared.messaging import publisher
from shared.models import Execution, utcnow
from shared.settings import reset_settings_cache
from tests.support import (
    FOUR_MODELS,
    assert_counters_exact,
    job_row,
    log_messages,
    make_tenant,
    running_beat,
    running_worker,
    trigger_runs,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow

MODELS = FOUR_MODELS


@pytest.fixture
def five_attempts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Jobs accepted from here get 5 attempts (the API fixes the budget on the job)."""
    monkeypatch.setenv("JOBYARD_MAX_ATTEMPTS", "5")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def held_by_the_worker(job_id: str) -> dict[uuid.UUID, int]:
    """What a worker holds right now: leased executions, and retries it keeps in memory
    until their countdown ends (dispatched, not leased, not yet due) — with attempts."""
    with session_scope() as session:
        rows = session.execute(
            select(Execution.id, Execution.attempts).where(
                Execution.job_id == uuid.UUID(job_id),
                Execution.status.in_(("pending", "retrying")),
                Execution.dispatched_at.is_not(None),
            )
        ).all()
    return {row.id: row.attempts for row in rows}


def all_running_again(held: dict[uuid.UUID, int]) -> bool:
    """Every one of them was claimed again (a new attempt) or is finished."""
    with session_scope() as session:
        rows = session.execute(
            select(Execution.id, Execution.attempts, Execution.status).where(
                Execution.id.in_(list(held))
            )
        ).all()
    return all(r.attempts > held[r.id] or r.status in ("success", "failed") for r in rows)


def test_kill_9_after_fan_out_runs_every_held_execution_again_within_a_minute(
    client: FlaskClient, tmp_path: Path, empty_broker: object, five_attempts: None
) -> None:
    """10,000 executions at 1-20 ms, 5% failing once in a while; the worker is killed
    after the fan-out, while it holds leases and retries. With the default heartbeat
    (5 s), dead-after (20 s) and sweep (10 s) settings, every execution it held runs
    again within 60 s, and the job ends with every execution counted exactly once."""
    tenant = make_tenant(n_queries=50)
    env = {
        "JOBYARD_SIMULATED_LATENCY_MS": 1,
        "JOBYARD_SIMULATED_LATENCY_JITTER_MS": 19,
        "JOBYARD_SIMULATED_FAILURE_RATE": 0.05,
        "JOBYARD_RETRY_BACKOFF_BASE_SECONDS": 1,
        "JOBYARD_GROUP_SIZE": 10,  # small groups: many claims and finishes in flight at the kill
    }
    (tmp_path / "doomed").mkdir()
    (tmp_path / "rescuer").mkdir()
    with running_beat(tmp_path, **env):
        with running_worker(tmp_path / "doomed", 2, **env) as doomed:
            job_id = trigger_runs(client, tenant, runs=50)
            assert job_row(job_id).total == 10_000
            wait_until(
                lambda: (
                    job_row(job_id).fanned_out_at is not None and job_row(job_id).success >= 1000
                ),
                90,
                "the fan-out to finish and work to be under way",
            )
            held = held_by_the_worker(job_id)
            doomed.kill()
            killed_at = time.monotonic()
        leased = sum(1 for _ in held)
        assert leased > 0, "the kill must catch the worker holding executions"
        with running_worker(tmp_path / "rescuer", 2, **env):
            wait_until(lambda: all_running_again(held), 90, "the held executions to run again")
            delay = time.monotonic() - killed_at
            print(
                f"\nkill -9: {len(held)} held executions running again {delay:.1f} s after the kill"
            )
            job = wait_for_job(job_id, timeout=180)
    assert delay < 60
    assert job.status == "completed", (job.success, job.failed)
    assert job.success == 10_000
    assert_counters_exact(job_id)


def claims_in(log: bytes, key: str) -> int:
    """The sum of ``key`` over a worker log's group tasks ("dropped": their return values)
    and its groups' ends ("counted": logged when a group's last outcome is written)."""
    messages = log_messages(log)
    if key == "counted":
        return sum(
            int(n)
            for n in re.findall(rb"group ran: \d+ executions claimed, (\d+) counted", messages)
        )
    return sum(int(n) for n in re.findall(rb"'" + key.encode() + rb"': (\d+)", messages))


@pytest.mark.every_database
def test_duplicate_messages_are_dropped(
    client: FlaskClient, tmp_path: Path, empty_broker: object
) -> None:
    """Every group is delivered twice, and one retried execution's message three times:
    each execution runs once per attempt, and no worker logs an error."""
    tenant = make_tenant(n_queries=5)
    job_id = trigger_runs(client, tenant, runs=5)  # 100 executions
    fan_out_job(uuid.UUID(job_id))  # in this process: it also dispatches the groups
    with session_scope() as session:
        ids = list(
            session.scalars(
                select(Execution.id)
                .where(Execution.job_id == uuid.UUID(job_id))
                .order_by(Execution.seq)
            )
        )
    # One execution fails its first attempt here and is due again at once.
    with connection_scope() as connection:
        (first,) = claim_group(connection, ids[:1], "test")
        finish_batch(connection, [(first, Outcome.failed("HTTP 503", retryable=True))])
        connection.execute(
            update(Execution).where(Execution.id == ids[0]).values(next_attempt_at=utcnow())
        )
    assert publisher.publish_groups([ids, ids]) == []  # the whole job, twice more
    assert publisher.publish_executions([(ids[0], None), (ids[0], None)]) == []
    with running_worker(tmp_path, 4) as worker:
        job = wait_for_job(job_id, timeout=60)
        time.sleep(1)  # the duplicates still queued are delivered and dropped
    assert job.status == "completed"
    assert_counters_exact(job_id)
    with session_scope() as session:
        attempts = dict(
            session.execute(
                select(Execution.id, Execution.attempts).where(
                    Execution.job_id == uuid.UUID(job_id)
                )
            ).all()
        )
    assert attempts.pop(ids[0]) == 2
    assert set(attempts.values()) == {1}
    log = worker.log_path.read_bytes()
    assert claims_in(log, "counted") == 100  # 99 first attempts and one second attempt
    assert claims_in(log, "dropped") >= 100  # every duplicate found nothing to claim


@pytest.mark.every_database
def test_two_workers_share_one_job(
    client: FlaskClient, tmp_path: Path, empty_broker: object
) -> None:
    tenant = make_tenant(n_queries=20)
    env = {"JOBYARD_SIMULATED_LATENCY_MS": 20, "JOBYARD_GROUP_SIZE": 20}
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    with (
        running_worker(tmp_path / "1", 2, **env) as first,
        running_worker(tmp_path / "2", 2, **env) as second,
    ):
        job_id = trigger_runs(client, tenant, runs=50)  # 4,000 executions
        job = wait_for_job(job_id, timeout=120)
    assert job.status == "completed" and job.success == 4000
    assert_counters_exact(job_id)
    counted = [claims_in(w.log_path.read_bytes(), "counted") for w in (first, second)]
    assert sum(counted) == 4000 and min(counted) > 0, counted


def test_a_small_job_does_not_wait_for_a_big_one(
    client: FlaskClient, tmp_path: Path, empty_broker: object
) -> None:
    """Another organisation's 50-execution job, submitted while a 20,000-execution job
    holds every worker slot, finishes within seconds, long before the big one."""
    big, small = make_tenant(n_queries=100), make_tenant(n_queries=5, name="Small")
    env = {"JOBYARD_SIMULATED_LATENCY_MS": 20}
    with running_worker(tmp_path, 4, **env):
        big_job = trigger_runs(client, big, runs=50)  # 20,000 executions
        wait_until(lambda: job_row(big_job).success >= 2000, 60, "the big job to be running")
        started = time.monotonic()
        small_job = trigger_runs(client, small, runs=5, models=MODELS[:2])  # 50 executions
        wait_for_job(small_job, timeout=60)
        small_seconds = time.monotonic() - started
        big_at_that_moment = job_row(big_job)
        wait_for_job(big_job, timeout=180)
    print(f"\nfairness: the 50-execution job took {small_seconds:.2f} s beside the big one")
    assert small_seconds < 10
    assert big_at_that_moment.status == "processing"  # it overtook the big job
    assert_counters_exact(small_job)
    assert_counters_exact(big_job)
