"""Each guard of the claim, against the real database: remove one and a test here fails."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from shared.db import session_scope
from shared.engine.fanout import fan_out_job
from shared.engine.outcomes import Outcome
from shared.models import Execution, utcnow
from tests.engine.conftest import claim, execution, execution_ids, finish, make_job

pytestmark = pytest.mark.every_database


def set_rows(ids: list[uuid.UUID], **values: object) -> None:
    with session_scope() as session:
        session.execute(update(Execution).where(Execution.id.in_(ids)).values(**values))


def test_a_group_is_claimed_in_one_statement_with_one_lease(organisation_id: uuid.UUID) -> None:
    """Every claimable id of the group is leased to the caller for its first attempt."""
    job_id = make_job(organisation_id, 5)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    claims = claim(ids, "worker-a")
    assert {c.execution_id for c in claims} == set(ids)
    assert {c.attempt for c in claims} == {1}
    assert len({c.lease_token for c in claims}) == 1
    assert sorted(c.item["index"] for c in claims) == [0, 1, 2, 3, 4]
    row = execution(ids[0])
    assert row.lease_owner == "worker-a" and row.attempts == 1
    assert row.dispatched_at is not None  # a leased row is never "ready" for dispatch


def test_a_duplicate_group_finds_nothing_to_claim(organisation_id: uuid.UUID) -> None:
    """The lease guard: a second delivery of the same group while it runs claims nothing."""
    job_id = make_job(organisation_id, 3)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    assert len(claim(ids)) == 3
    assert claim(ids, "worker-b") == []
    assert {execution(i).attempts for i in ids} == {1}


def test_an_expired_lease_can_be_claimed_again(organisation_id: uuid.UUID) -> None:
    """The other half of the lease guard: once the lease has expired, a new attempt may."""
    job_id = make_job(organisation_id, 1)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    assert claim(ids)
    set_rows(ids, lease_expires_at=utcnow() - timedelta(seconds=1))
    again = claim(ids, "worker-b")
    assert len(again) == 1 and again[0].attempt == 2


def test_a_finished_execution_is_not_claimed(organisation_id: uuid.UUID) -> None:
    """The status guard: a stale message for a finished execution is dropped."""
    job_id = make_job(organisation_id, 1)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    (first,) = claim(ids)
    finish([(first, Outcome.succeeded({"ok": True}))])
    assert claim(ids) == []
    assert execution(ids[0]).attempts == 1


def test_a_retry_is_not_claimed_before_its_time(organisation_id: uuid.UUID) -> None:
    """The retry-time guard: a message that arrives early claims nothing (yet)."""
    job_id = make_job(organisation_id, 1)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    set_rows(ids, status="retrying", next_attempt_at=utcnow() + timedelta(seconds=60))
    assert claim(ids) == []
    set_rows(ids, next_attempt_at=utcnow() - timedelta(seconds=1))
    assert len(claim(ids)) == 1


def test_no_attempt_beyond_the_jobs_budget(organisation_id: uuid.UUID) -> None:
    """The attempts guard: a redelivered message cannot claim attempt 2 of 1."""
    job_id = make_job(organisation_id, 1, max_attempts=1)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    assert len(claim(ids)) == 1
    set_rows(ids, lease_token=None, lease_expires_at=None)  # as if its lease were released
    assert claim(ids) == []
    assert execution(ids[0]).attempts == 1
