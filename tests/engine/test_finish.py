"""Finishing in batches: exact counters, the lease guard, mixed outcomes, costs."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from shared.db import session_scope
from shared.engine.fanout import fan_out_job
from shared.engine.outcomes import Outcome
from shared.models import Execution, utcnow
from tests.engine.conftest import claim, execution, execution_ids, finish, make_job, outbox_rows
from tests.support import assert_counters_exact, job_row

pytestmark = pytest.mark.every_database


def test_a_mixed_group_ends_with_exact_counters(organisation_id: uuid.UUID) -> None:
    """Two succeed, two retry, two fail, in one batch: every counter moves exactly."""
    job_id = make_job(organisation_id, 6)
    fan_out_job(job_id)
    claims = claim(execution_ids(job_id))
    outcomes = [
        Outcome.succeeded({"n": 1}, cost=0.25),
        Outcome.succeeded({"n": 2}, cost=0.25),
        Outcome.failed("HTTP 503", retryable=True, retry_after=1.0, cost=0.5),
        Outcome.failed("timeout", retryable=True),
        Outcome.failed("HTTP 400: bad request"),
        Outcome.failed("refused", cost=0.5),
    ]
    report = finish(list(zip(claims, outcomes, strict=True)))
    assert [f.status for f in report.finished] == [
        "success",
        "success",
        "retrying",
        "retrying",
        "failed",
        "failed",
    ]
    retries = [f for f in report.finished if f.status == "retrying"]
    assert all(f.republish_in is not None and f.republish_in >= 0 for f in retries)
    assert retries[0].republish_in is not None and retries[0].republish_in >= 1.0  # Retry-After
    job = assert_counters_exact(job_id)
    assert (job.pending, job.retrying, job.success, job.failed) == (0, 2, 2, 2)
    assert job.status == "processing"
    assert job.cost == 1.5
    assert execution(claims[0].execution_id).result == {"n": 1}
    assert execution(claims[4].execution_id).error == "HTTP 400: bad request"
    assert report.jobs_ended == [] and outbox_rows(job_id) == 0


def test_a_stale_attempt_never_overwrites_the_live_one(organisation_id: uuid.UUID) -> None:
    """The lease guard of the finish: attempt 1's lease expired and attempt 2 took over;
    attempt 1 finishing late stores nothing and counts nothing."""
    job_id = make_job(organisation_id, 1)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    (stale,) = claim(ids, "worker-a")
    with session_scope() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == ids[0])
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    (live,) = claim(ids, "worker-b")
    report = finish([(stale, Outcome.succeeded({"from": "stale"}, cost=0.1))])
    assert report.finished[0].status is None
    row = execution(ids[0])
    assert row.result is None and row.status == "pending" and row.lease_owner == "worker-b"
    assert row.cost == 0.1  # what the stale attempt spent is still counted as spent
    assert job_row(job_id).success == 0
    finish([(live, Outcome.succeeded({"from": "live"}))])
    assert execution(ids[0]).result == {"from": "live"}
    job = assert_counters_exact(job_id)
    assert (job.success, job.status) == (1, "completed")


def test_a_finish_moves_counters_from_the_status_seen_at_claim(
    organisation_id: uuid.UUID,
) -> None:
    """The status guard of the finish: a row whose status changed under the same lease
    (any writer other than this attempt) is not finished by it."""
    job_id = make_job(organisation_id, 1)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    (first,) = claim(ids)
    with session_scope() as session:
        session.execute(update(Execution).where(Execution.id == ids[0]).values(status="retrying"))
    report = finish([(first, Outcome.succeeded({"x": 1}))])
    assert report.finished[0].status is None
    assert execution(ids[0]).status == "retrying"


def test_the_last_attempt_fails_instead_of_retrying(organisation_id: uuid.UUID) -> None:
    """A retryable failure on the job's last attempt fails, keeping the error."""
    job_id = make_job(organisation_id, 1, max_attempts=1)
    fan_out_job(job_id)
    (only,) = claim(execution_ids(job_id))
    report = finish([(only, Outcome.failed("HTTP 500", retryable=True))])
    assert report.finished[0].status == "failed"
    job = assert_counters_exact(job_id)
    assert job.status == "failed" and report.jobs_ended == [job_id]
    assert execution(only.execution_id).error == "HTTP 500"


def test_a_deferred_attempt_gives_its_attempt_back(organisation_id: uuid.UUID) -> None:
    """Throttled, not attempted: the attempt is not spent and it is due again later."""
    job_id = make_job(organisation_id, 1, max_attempts=1)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    (first,) = claim(ids)
    report = finish([(first, Outcome.deferred(0.2))])
    assert report.finished[0].status == "pending" and report.finished[0].republish_in == 0.2
    row = execution(ids[0])
    assert (row.attempts, row.lease_token, row.status) == (0, None, "pending")
    assert claim(ids) == []  # not before its time
    with session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id == ids[0]).values(next_attempt_at=utcnow())
        )
    assert len(claim(ids)) == 1  # and then with the attempt it had: 1 of 1
