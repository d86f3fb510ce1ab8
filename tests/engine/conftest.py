"""Engine tests drive fan-out, claim, finish, cancel and the sweep directly against the
real PostgreSQL, with a job type of their own (``test.items``: N numbered items), so that
what they prove holds for every job type."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.accounts.organisations import create_organisation
from shared.db import connection_scope, dialect_name, session_scope
from shared.engine.claim import Claim, claim_group
from shared.engine.finish import FlushReport, finish_batch
from shared.engine.job_types import JobTypeSpec, PlannedItem, register
from shared.engine.jobs import new_job
from shared.engine.locks import lock_dispatch
from shared.engine.outcomes import Outcome
from shared.models import Execution, Job, OutboxEvent

TEST_TYPE = "test.items"


def plan_items(_session: Any, job: Job) -> Iterator[PlannedItem]:
    for index in range(int(job.payload["n"])):
        yield PlannedItem(key=f"item-{index}", item={"index": index})


register(JobTypeSpec(name=TEST_TYPE, planner=plan_items))


@pytest.fixture
def organisation_id() -> uuid.UUID:
    """A fresh organisation."""
    with session_scope() as session:
        return create_organisation(session, "engine-tests").id


def make_job(organisation_id: uuid.UUID, n: int, *, max_attempts: int = 3) -> uuid.UUID:
    """A committed, not yet fanned-out ``test.items`` job of ``n`` items."""
    with session_scope() as session:
        job = new_job(
            organisation_id=organisation_id, job_type=TEST_TYPE, total=n, payload={"n": n}
        )
        job.max_attempts = max_attempts
        session.add(job)
        session.flush()
        return job.id


def execution_ids(job_id: uuid.UUID) -> list[uuid.UUID]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Execution.id).where(Execution.job_id == job_id).order_by(Execution.seq)
            )
        )


def claim(ids: Sequence[uuid.UUID], owner: str = "test-worker") -> list[Claim]:
    with connection_scope() as connection:
        return claim_group(connection, ids, owner)


def finish(reports: Sequence[tuple[Claim, Outcome]]) -> FlushReport:
    with connection_scope() as connection:
        return finish_batch(connection, reports)


def execution(execution_id: uuid.UUID) -> Execution:
    with session_scope() as session:
        row = session.get(Execution, execution_id)
        assert row is not None
        return row


def outbox_rows(job_id: uuid.UUID) -> int:
    with session_scope() as session:
        return (
            session.scalar(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.job_id == job_id)
            )
            or 0
        )


def dispatched(job_id: uuid.UUID) -> int:
    """How many of the job's executions have been handed to the broker."""
    with session_scope() as session:
        return (
            session.scalar(
                select(func.count()).where(
                    Execution.job_id == job_id, Execution.dispatched_at.is_not(None)
                )
            )
            or 0
        )


@contextmanager
def dispatch_lock_held() -> Iterator[None]:
    """Another transaction holds the dispatch lock (as a worker's fill does) meanwhile."""
    with connection_scope() as holder:
        if dialect_name(holder) != "postgresql":
            pytest.skip("SQLite has no dispatch lock: its writers take turns anyway")
        lock_dispatch(holder)
        yield
