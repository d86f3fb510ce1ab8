"""derive_status (Python) and status_expression (SQL) agree on every counter combination."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import NamedTuple

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from shared.db import new_session
from shared.engine.counters import move_counters
from shared.engine.status import derive_status, status_expression
from shared.models import Job, JobStatus, Organisation, utcnow


class Case(NamedTuple):
    total: int
    pending: int
    retrying: int
    success: int
    failed: int
    started: bool
    canceled: bool

    def derived(self) -> JobStatus:
        return derive_status(
            total=self.total,
            pending=self.pending,
            success=self.success,
            failed=self.failed,
            started=self.started,
            canceled=self.canceled,
        )


def all_cases(max_total: int = 4) -> list[Case]:
    """Every split of 0..max_total executions over the four counters, with both flags."""
    cases = []
    for total in range(max_total + 1):
        for pending, retrying, success in itertools.product(range(total + 1), repeat=3):
            failed = total - pending - retrying - success
            if failed < 0:
                continue
            for started, canceled in itertools.product((False, True), repeat=2):
                cases.append(Case(total, pending, retrying, success, failed, started, canceled))
    return cases


CASES = all_cases()


@pytest.fixture
def session() -> Iterator[Session]:
    """A transaction on the test database that is rolled back afterwards."""
    with new_session() as session:
        session.begin()
        try:
            yield session
        finally:
            session.rollback()


def insert_jobs(session: Session, cases: list[Case]) -> dict[uuid.UUID, Case]:
    """One job row per case, with a status that no case derives."""
    org = Organisation(name="status-table")
    session.add(org)
    session.flush()
    now = utcnow()
    rows = {uuid.uuid4(): case for case in cases}
    session.execute(
        insert(Job),
        [
            {
                "id": job_id,
                "organisation_id": org.id,
                "type": "ai_queries",
                "status": "unset",
                "total": c.total,
                "pending": c.pending,
                "retrying": c.retrying,
                "success": c.success,
                "failed": c.failed,
                "started_at": now if c.started else None,
                "canceled_at": now if c.canceled else None,
                "payload": {},
            }
            for job_id, c in rows.items()
        ],
    )
    return rows


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (Case(3, 3, 0, 0, 0, False, False), JobStatus.PENDING),
        (Case(3, 3, 0, 0, 0, True, False), JobStatus.PROCESSING),
        (Case(3, 2, 1, 0, 0, False, False), JobStatus.PROCESSING),
        (Case(3, 0, 3, 0, 0, True, False), JobStatus.PROCESSING),
        (Case(3, 1, 0, 2, 0, True, False), JobStatus.PROCESSING),
        (Case(3, 0, 0, 3, 0, True, False), JobStatus.COMPLETED),
        (Case(3, 0, 0, 0, 3, True, False), JobStatus.FAILED),
        (Case(3, 0, 0, 2, 1, True, False), JobStatus.PARTIAL_FAILED),
        (Case(3, 0, 0, 3, 0, True, True), JobStatus.CANCELED),
        (Case(3, 3, 0, 0, 0, False, True), JobStatus.CANCELED),
        (Case(0, 0, 0, 0, 0, False, False), JobStatus.COMPLETED),
    ],
)
def test_derive_status_table(case: Case, expected: JobStatus) -> None:
    """The documented status of representative counter states."""
    assert case.derived() == expected


def test_expression_in_select_agrees_with_derive_status(session: Session) -> None:
    """SELECT status_expression(...) equals derive_status for every case."""
    rows = insert_jobs(session, CASES)
    result = session.execute(
        select(Job.id, status_expression(Job.pending, Job.success, Job.failed)).where(
            Job.id.in_(rows)
        )
    ).all()
    assert len(result) == len(CASES)
    mismatches = [
        (rows[i], s, rows[i].derived().value) for i, s in result if s != rows[i].derived()
    ]
    assert mismatches == []


def test_expression_in_update_agrees_with_derive_status(session: Session) -> None:
    """UPDATE jobs SET status = status_expression(...) writes derive_status for every case."""
    rows = insert_jobs(session, CASES)
    session.execute(
        update(Job)
        .where(Job.id.in_(rows))
        .values(status=status_expression(Job.pending, Job.success, Job.failed))
    )
    written = dict(session.execute(select(Job.id, Job.status).where(Job.id.in_(rows))).all())
    mismatches = [(c, written[i]) for i, c in rows.items() if written[i] != c.derived().value]
    assert mismatches == []
    assert set(written.values()) == {s.value for s in JobStatus}


@pytest.mark.parametrize(
    ("source", "target"), [("pending", "success"), ("pending", "failed"), ("retrying", "failed")]
)
def test_expression_over_new_values_agrees(session: Session, source: str, target: str) -> None:
    """Over moved counters (as move_counters passes them) the SQL still agrees."""
    cases = [c for c in CASES if getattr(c, source) >= 1]
    rows = insert_jobs(session, cases)
    delta = {name: 0 for name in ("pending", "retrying", "success", "failed")}
    delta[source] -= 1
    delta[target] += 1
    expression = status_expression(
        Job.pending + delta["pending"], Job.success + delta["success"], Job.failed + delta["failed"]
    )
    result = dict(session.execute(select(Job.id, expression).where(Job.id.in_(rows))).all())
    for job_id, c in rows.items():
        moved = c._replace(**{source: getattr(c, source) - 1, target: getattr(c, target) + 1})
        assert result[job_id] == moved.derived().value, (c, moved)


def test_move_counters_derives_the_status(session: Session) -> None:
    """move_counters moves one execution and leaves the status derive_status gives."""
    cases = [c for c in CASES if c.pending >= 1 and c.total <= 3]
    rows = insert_jobs(session, cases)
    now = utcnow()
    for job_id in rows:
        move_counters(session, job_id, {("pending", "success"): 1}, now)
    got = {
        row.id: row
        for row in session.execute(
            select(Job.id, Job.pending, Job.success, Job.status, Job.finished_at).where(
                Job.id.in_(rows)
            )
        )
    }
    for job_id, c in rows.items():
        moved = c._replace(pending=c.pending - 1, success=c.success + 1)
        row = got[job_id]
        assert (row.pending, row.success) == (moved.pending, moved.success)
        assert row.status == moved.derived().value, (c, row.status)
        assert (row.finished_at is not None) == (moved.success + moved.failed == moved.total)


def test_case_table_is_exhaustive() -> None:
    """The table covers every status, so agreement is checked on each branch."""
    assert {c.derived() for c in CASES} == set(JobStatus)
    assert len(CASES) == 4 * sum((t + 1) * (t + 2) * (t + 3) // 6 for t in range(5))
