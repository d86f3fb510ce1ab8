"""Schedules: slot arithmetic (UTC, month ends, skipped slots) and a project's slots
claimed by the engine's tick, in process."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from shared.accounts.auth import Principal
from shared.db import session_scope
from shared.engine import outbox, periodic
from shared.engine.counters import move_counters
from shared.mentionlab import cached_jobs
from shared.mentionlab.models import AiRun, CachedJob, Project
from shared.mentionlab.recurrence import (
    RECURRENCE_KIND,
    add_months,
    first_slot,
    next_slot,
    slot,
)
from shared.models import Job, utcnow
from shared.settings import reset_settings_cache
from tests.periodic_support import next_slot as next_slot_of
from tests.periodic_support import set_next_slot
from tests.support import Tenant


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2026-01-15T09:30:00", 1, "2026-02-15T09:30:00"),
        ("2026-01-31T09:30:00", 1, "2026-02-28T09:30:00"),
        ("2028-01-31T00:00:00", 1, "2028-02-29T00:00:00"),  # leap year
        ("2026-03-31T23:59:59", 1, "2026-04-30T23:59:59"),
        ("2026-01-31T12:00:00", 2, "2026-03-31T12:00:00"),  # counted from the 31st, no drift
        ("2026-12-31T06:00:00", 1, "2027-01-31T06:00:00"),  # year wraps
        ("2026-11-30T06:00:00", 3, "2027-02-28T06:00:00"),
        ("2026-05-31T06:00:00", 12, "2027-05-31T06:00:00"),
        ("2028-02-29T06:00:00", 12, "2029-02-28T06:00:00"),
        ("2026-05-31T06:00:00", 25, "2028-06-30T06:00:00"),
    ],
)
def test_add_months_clamps_to_the_month_length(start: str, months: int, expected: str) -> None:
    assert add_months(at(start), months) == at(expected)


@pytest.mark.parametrize(
    ("recurrence", "expected"),
    [
        ("daily", "2026-03-02T10:00:00"),
        ("weekly", "2026-03-08T10:00:00"),
        ("biweekly", "2026-03-15T10:00:00"),
        ("monthly", "2026-04-01T10:00:00"),
    ],
)
def test_one_interval(recurrence: str, expected: str) -> None:
    assert slot(recurrence, at("2026-03-01T10:00:00"), 1) == at(expected)


def test_manual_has_no_slots() -> None:
    with pytest.raises(ValueError, match="manual"):
        slot("manual", at("2026-03-01T10:00:00"), 1)


def test_daily_next_slot_is_one_interval_after_a_just_due_slot() -> None:
    seen = at("2026-03-01T10:00:00")
    assert next_slot("daily", seen, seen + timedelta(seconds=5)) == at("2026-03-02T10:00:00")


def test_a_slot_equal_to_now_is_not_the_next_one() -> None:
    """The next slot is strictly after now."""
    seen = at("2026-03-01T10:00:00")
    assert next_slot("daily", seen, at("2026-03-02T10:00:00")) == at("2026-03-03T10:00:00")
    assert next_slot("daily", seen, seen) == at("2026-03-02T10:00:00")


@pytest.mark.parametrize(
    ("recurrence", "now", "expected"),
    [
        # Missed slots are skipped, not caught up; the time of day is kept.
        ("daily", "2026-03-05T12:00:00", "2026-03-06T10:00:00"),
        ("daily", "2026-03-05T09:59:59", "2026-03-05T10:00:00"),
        ("weekly", "2026-03-30T00:00:00", "2026-04-05T10:00:00"),
        ("biweekly", "2026-04-20T10:00:00", "2026-04-26T10:00:00"),
        ("monthly", "2026-06-01T10:00:00", "2026-07-01T10:00:00"),
        ("monthly", "2026-06-01T09:00:00", "2026-06-01T10:00:00"),
    ],
)
def test_missed_slots_are_skipped(recurrence: str, now: str, expected: str) -> None:
    seen = at("2026-03-01T10:00:00")
    assert next_slot(recurrence, seen, at(now)) == at(expected)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-01-31T08:00:00", "2026-02-28T08:00:00"),
        ("2026-02-28T08:00:00", "2026-03-31T08:00:00"),  # back to the 31st
        ("2026-03-31T08:00:01", "2026-04-30T08:00:00"),
        ("2026-12-31T08:00:01", "2027-01-31T08:00:00"),
        ("2027-01-15T00:00:00", "2027-01-31T08:00:00"),
    ],
)
def test_monthly_from_the_31st(now: str, expected: str) -> None:
    """Counted in months from the claimed slot: a 31st stays the 31st where it exists."""
    seen = at("2026-01-31T08:00:00")
    assert next_slot("monthly", seen, at(now)) == at(expected)


def test_monthly_next_slot_when_now_is_earlier_in_the_month_than_seen() -> None:
    seen = at("2026-01-31T08:00:00")
    assert next_slot("monthly", seen, at("2026-03-01T00:00:00")) == at("2026-03-31T08:00:00")


def test_next_slot_is_always_after_now_and_on_the_schedule() -> None:
    """Property check over many (seen, now) pairs."""
    seen = at("2026-01-29T07:15:00")
    for recurrence in ("daily", "weekly", "biweekly", "monthly"):
        for hours in range(0, 24 * 400, 37):
            now = seen + timedelta(hours=hours)
            following = next_slot(recurrence, seen, now)
            assert following > now
            k = next(k for k in range(1, 500) if slot(recurrence, seen, k) == following)
            assert k == 1 or slot(recurrence, seen, k - 1) <= now


def test_first_slot_is_one_interval_after_now_in_whole_seconds() -> None:
    now = at("2026-01-31T08:00:00.654321")
    assert first_slot("daily", now) == at("2026-02-01T08:00:00")
    assert first_slot("monthly", now) == at("2026-02-28T08:00:00")


# ------------------------------------------------------------------------ the claim (DB)


def schedule(
    tenant: Tenant, recurrence: str = "daily", ago: timedelta = timedelta(hours=1)
) -> datetime:
    """Give the tenant's project a recurrence, cached jobs for two queries, and a due slot."""
    principal = Principal(tenant.org_id, tenant.user_id)
    due = datetime.now(UTC) - ago
    with session_scope() as session:
        cached_jobs.create_many(
            session,
            principal,
            tenant.project_id,
            [
                cached_jobs.CachedJobPlan(tenant.query_ids[0], ["openai"], 1),
                cached_jobs.CachedJobPlan(tenant.query_ids[1], ["anthropic", "perplexity"], 2),
            ],
        )
        session.execute(
            update(Project)
            .where(Project.id == tenant.project_id)
            .values(recurrence=recurrence, recurrence_status="active")
        )
    stored = set_next_slot(RECURRENCE_KIND, tenant.project_id, due, tenant.org_id)
    assert stored is not None  # as the database stored it
    return stored


def project_jobs(project_id: uuid.UUID) -> list[Job]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Job)
                .where(Job.id.in_(select(AiRun.job_id).where(AiRun.project_id == project_id)))
                .order_by(Job.created_at)
            )
        )


def next_run(project_id: uuid.UUID) -> datetime | None:
    return next_slot_of(RECURRENCE_KIND, project_id)


def test_a_due_project_is_claimed_once(tenant: Tenant, empty_broker: object) -> None:
    """One job per cached job, tagged with the slot; the slot moves past now."""
    seen = schedule(tenant)
    now = datetime.now(UTC)
    report = periodic.tick(now).of(RECURRENCE_KIND)
    jobs = project_jobs(tenant.project_id)
    assert len(jobs) == 2
    assert all(j.metadata_["trigger"] == "schedule" for j in jobs)
    assert {j.metadata_["slot"] for j in jobs} == {seen.isoformat()}
    assert all(j.created_by_user_id is None for j in jobs)
    assert sorted(j.total for j in jobs) == [1, 4]
    assert set(report.jobs_created) >= {j.id for j in jobs}
    assert next_run(tenant.project_id) == seen + timedelta(days=1)
    # Claiming again at the same moment finds nothing due for this project.
    periodic.tick(now)
    assert len(project_jobs(tenant.project_id)) == 2
    with session_scope() as session:
        rows = session.scalars(
            select(CachedJob).where(CachedJob.project_id == tenant.project_id)
        ).all()
        assert {r.status for r in rows} == {"active"}
        assert {r.last_job_id for r in rows} == {j.id for j in jobs}


def test_missed_slots_are_not_caught_up(tenant: Tenant, empty_broker: object) -> None:
    """Ten days late: one run, and the next slot is the first one after now."""
    seen = schedule(tenant, ago=timedelta(days=10, hours=1))
    periodic.tick()
    assert len(project_jobs(tenant.project_id)) == 2
    following = next_run(tenant.project_id)
    assert following == seen + timedelta(days=11)
    assert following is not None and following > datetime.now(UTC)


@pytest.mark.parametrize(
    "change", [{"recurrence": "manual"}, {"recurrence_status": "paused"}, {"next_slot": None}]
)
def test_unscheduled_projects_are_not_claimed(
    tenant: Tenant, empty_broker: object, change: dict[str, object]
) -> None:
    schedule(tenant)
    if "next_slot" in change:
        set_next_slot(RECURRENCE_KIND, tenant.project_id, None)
    else:
        with session_scope() as session:
            session.execute(update(Project).where(Project.id == tenant.project_id).values(**change))
    periodic.tick()
    assert project_jobs(tenant.project_id) == []


def test_a_future_slot_is_not_claimed(tenant: Tenant, empty_broker: object) -> None:
    seen = schedule(tenant, ago=timedelta(seconds=-60))
    periodic.tick()
    assert project_jobs(tenant.project_id) == []
    assert next_run(tenant.project_id) == seen


def test_inactive_cached_jobs_do_not_run(tenant: Tenant, empty_broker: object) -> None:
    schedule(tenant)
    with session_scope() as session:
        session.execute(
            update(CachedJob)
            .where(CachedJob.query_id == tenant.query_ids[0])
            .values(status="inactive")
        )
    periodic.tick()
    jobs = project_jobs(tenant.project_id)
    assert [j.payload["queryIds"] for j in jobs] == [[str(tenant.query_ids[1])]]


def test_a_refused_plan_is_skipped_and_the_slot_still_advances(
    tenant: Tenant, empty_broker: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan over the execution limit is logged and skipped; the other one runs."""
    seen = schedule(tenant)
    monkeypatch.setenv("JOBYARD_MAX_EXECUTIONS_PER_JOB", "3")
    reset_settings_cache()
    try:
        periodic.tick()
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    jobs = project_jobs(tenant.project_id)
    assert [j.payload["queryIds"] for j in jobs] == [[str(tenant.query_ids[0])]]
    assert next_run(tenant.project_id) == seen + timedelta(days=1)


def test_concurrent_claims_run_a_slot_once(tenant: Tenant, empty_broker: object) -> None:
    """Eight ticks at once (threads, separate connections): exactly one wins the slot."""
    seen = schedule(tenant)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            barrier.wait()
            periodic.tick()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    jobs = project_jobs(tenant.project_id)
    assert len(jobs) == 2
    assert {j.metadata_["slot"] for j in jobs} == {seen.isoformat()}


def test_finished_jobs_settle_their_cached_jobs_through_the_outbox(
    tenant: Tenant, empty_broker: object
) -> None:
    """A scheduled run's jobs end; their job.finished events (not a polling tick) write
    the cached jobs down as ended."""
    schedule(tenant)
    periodic.tick()
    with session_scope() as session:
        jobs = session.execute(
            select(Job.id, Job.total).where(
                Job.id.in_(select(AiRun.job_id).where(AiRun.project_id == tenant.project_id))
            )
        ).all()
        for job_id, total in jobs:
            move_counters(session, job_id, {("pending", "failed"): total}, utcnow())
    periodic.tick()
    with session_scope() as session:
        statuses = session.scalars(
            select(CachedJob.status).where(CachedJob.project_id == tenant.project_id)
        ).all()
    assert statuses == ["active", "active"]  # the tick polls nothing
    assert outbox.drain(session_scope)["mentionlab.cached_jobs"] >= 2
    with session_scope() as session:
        statuses = session.scalars(
            select(CachedJob.status).where(CachedJob.project_id == tenant.project_id)
        ).all()
    assert statuses == ["ended", "ended"]


def test_tick_schedules_a_recurring_project_that_has_no_slot(tenant: Tenant) -> None:
    """A recurrence written without the projects service gets its first slot from the tick."""
    with session_scope() as session:
        session.execute(
            update(Project)
            .where(Project.id == tenant.project_id)
            .values(recurrence="weekly", recurrence_status="active")
        )
    assert next_run(tenant.project_id) is None
    now = datetime.now(UTC)
    report = periodic.tick(now).of(RECURRENCE_KIND)
    assert report.reconciled >= 1
    assert next_run(tenant.project_id) == first_slot("weekly", now)
    assert project_jobs(tenant.project_id) == []
    periodic.tick(now + timedelta(seconds=5))  # a filled slot is left alone
    assert next_run(tenant.project_id) == first_slot("weekly", now)
