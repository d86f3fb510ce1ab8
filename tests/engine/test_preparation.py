"""A preparer's result is written once (``engine.jobs.record_preparation``): the job that
counted one placeholder execution counts its real items, and a second result, a canceled
job or a job gone changes nothing — on each database."""

from __future__ import annotations

import uuid

import pytest

from shared.db import session_scope
from shared.engine.cancel import cancel_executions
from shared.engine.jobs import record_preparation
from shared.models import Job
from tests.engine.conftest import make_job

pytestmark = pytest.mark.every_database


def prepare(job_id: uuid.UUID, prepared: dict[str, object], total: int) -> bool:
    with session_scope() as session:
        return record_preparation(session, job_id, prepared, total)


def test_the_first_result_counts_and_a_second_changes_nothing(organisation_id: uuid.UUID) -> None:
    job_id = make_job(organisation_id, 1)  # the placeholder: 1 execution, pending
    assert prepare(job_id, {"items": [1, 2, 3, 4, 5]}, 5)
    assert not prepare(job_id, {"items": [1, 2]}, 2)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.total, job.pending, job.payload["items"]) == (5, 5, [1, 2, 3, 4, 5])


def test_a_canceled_job_is_not_resized(organisation_id: uuid.UUID) -> None:
    job_id = make_job(organisation_id, 1)
    with session_scope() as session:
        cancel_executions(session, job_id)
    assert not prepare(job_id, {"items": [1, 2, 3]}, 3)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.total <= 1 and "items" not in job.payload
        assert job.total == job.pending + job.retrying + job.success + job.failed


def test_a_job_gone_is_nothing_to_prepare() -> None:
    assert not prepare(uuid.uuid4(), {"items": [1]}, 1)


def test_a_one_item_result_is_not_replaced_by_a_later_one(organisation_id: uuid.UUID) -> None:
    """The counters cannot tell a one-item result from the placeholder: the prepared keys
    do."""
    job_id = make_job(organisation_id, 1)
    assert prepare(job_id, {"items": ["only"]}, 1)
    assert not prepare(job_id, {"items": [1, 2, 3]}, 3)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.total, job.payload["items"]) == (1, ["only"])
