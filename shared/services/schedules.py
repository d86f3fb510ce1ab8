"""Schedules: a project's recurrence drives scheduled runs of its cached jobs.

A project whose ``recurrence`` is daily, weekly, biweekly or monthly and whose
``recurrence_status`` is active has a ``next_run_at`` (UTC). Beat publishes
``schedules.tick`` every few seconds; a tick claims each due project with a
compare-and-set on ``next_run_at`` — ``UPDATE projects SET next_run_at = :next WHERE id =
:id AND next_run_at = :seen`` — so that of several beats (or several ticks in flight) only
one wins a slot. The claim and the slot's Jobs commit in the same transaction: a slot is
either run exactly once or not claimed at all. Missed slots are not caught up: the next
slot is the first one strictly after now.

When a recurrence is set (or changed, or resumed) the first run is one interval after
now, never at once: saving a project must not start work behind the client's back (POST
/api/cached-jobs/trigger runs now). Re-saving the same recurrence keeps the slot it had.
"""

from __future__ import annotations

import calendar
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.models import Project, utcnow
from shared.services import cached_jobs
from shared.services.jobs import dispatch_jobs

log = logging.getLogger(__name__)

MANUAL = "manual"
ACTIVE = "active"
PAUSED = "paused"
INTERVAL_DAYS = {"daily": 1, "weekly": 7, "biweekly": 14}
MONTHLY = "monthly"
RECURRENCES = (MANUAL, *INTERVAL_DAYS, MONTHLY)
CLAIM_BATCH = 100


# ---------------------------------------------------------------------------------------
# Slot arithmetic (pure, UTC).


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` later; the day is clamped to the month's length
    (Jan 31 + 1 month = Feb 28, or 29 in a leap year)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def slot(recurrence: str, start: datetime, k: int) -> datetime:
    """The ``k``-th slot after ``start`` (``k`` intervals later)."""
    if recurrence in INTERVAL_DAYS:
        return start + timedelta(days=INTERVAL_DAYS[recurrence] * k)
    if recurrence == MONTHLY:
        return add_months(start, k)
    raise ValueError(f"recurrence {recurrence!r} has no slots")


def next_slot(recurrence: str, seen: datetime, now: datetime) -> datetime:
    """The first slot of the schedule through ``seen`` that is strictly after ``now``
    (at least one interval after ``seen``): slots at or before now are skipped, not run."""
    if recurrence in INTERVAL_DAYS:
        step = timedelta(days=INTERVAL_DAYS[recurrence])
        k = max(1, (now - seen) // step + 1)
        return seen + step * k
    # Months: counted from ``seen`` every time (never month by month), so clamping a
    # 31st to a shorter month does not carry over to the months after it.
    k = max(1, (now.year - seen.year) * 12 + now.month - seen.month)
    while slot(recurrence, seen, k) <= now:
        k += 1
    return slot(recurrence, seen, k)


def first_slot(recurrence: str, now: datetime) -> datetime:
    """The first run of a newly set recurrence: one interval after now (whole seconds)."""
    return slot(recurrence, now.replace(microsecond=0), 1)


def is_scheduled(project: Project) -> bool:
    return project.recurrence != MANUAL and project.recurrence_status == ACTIVE


# ---------------------------------------------------------------------------------------
# Setting a recurrence.


def apply_recurrence(
    session: Session,
    project: Project,
    *,
    previous_recurrence: str,
    previous_status: str,
    now: datetime | None = None,
) -> None:
    """Bring ``next_run_at`` and the cached jobs' status in line with the project's
    recurrence after a create or an update (called by the projects service)."""
    now = now or utcnow()
    if not is_scheduled(project):
        project.next_run_at = None
    elif (
        project.next_run_at is None
        or project.recurrence != previous_recurrence
        or previous_status != ACTIVE
    ):
        project.next_run_at = first_slot(project.recurrence, now)
    if project.recurrence_status != previous_status:
        session.flush()
        cached_jobs.switch_project(session, project.id, paused=project.recurrence_status == PAUSED)


# ---------------------------------------------------------------------------------------
# The tick.


@dataclass
class TickReport:
    """What one tick did."""

    projects_claimed: int = 0
    projects_adopted: int = 0
    cached_jobs_ended: int = 0
    jobs_created: list[uuid.UUID] = field(default_factory=list)
    jobs_undispatched: int = 0


def claim_due_projects(now: datetime | None = None, report: TickReport | None = None) -> TickReport:
    """Claim every due project (compare-and-set on ``next_run_at``) and run its cached jobs
    for the claimed slot; the Jobs are dispatched after their transaction commits."""
    now = now or utcnow()
    report = report or TickReport()
    with session_scope() as session:
        due = session.execute(
            select(Project.id, Project.next_run_at, Project.recurrence)
            .where(
                Project.recurrence != MANUAL,
                Project.recurrence_status == ACTIVE,
                Project.next_run_at <= now,
            )
            .order_by(Project.next_run_at, Project.id)
            .limit(CLAIM_BATCH)
        ).all()
    created: list[uuid.UUID] = []
    for project_id, seen, recurrence in due:
        if recurrence not in RECURRENCES or seen is None:  # pragma: no cover - defensive
            continue
        with session_scope() as session:
            job_ids = _claim_and_run(session, project_id, seen, recurrence, now)
        if job_ids is None:
            continue
        report.projects_claimed += 1
        created += job_ids
    # Every claimed slot has committed: publish all their fan-outs at once.
    report.jobs_created += created
    report.jobs_undispatched += len(created) - dispatch_jobs(created)
    return report


def _claim_and_run(
    session: Session, project_id: uuid.UUID, seen: datetime, recurrence: str, now: datetime
) -> list[uuid.UUID] | None:
    """One transaction: advance the slot if nobody else has, then write the slot's Jobs.
    None when another tick won the slot (or the project changed meanwhile)."""
    following = next_slot(recurrence, seen, now)
    result = session.execute(
        update(Project)
        .where(
            Project.id == project_id,
            Project.next_run_at == seen,
            Project.recurrence == recurrence,
            Project.recurrence_status == ACTIVE,
        )
        # Advancing the schedule is not an edit of the project: keep its updated_at.
        .values(next_run_at=following, updated_at=Project.updated_at)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    project = session.get(Project, project_id)
    assert project is not None
    job_ids = cached_jobs.run_cached_jobs(
        session,
        project,
        created_by_user_id=None,
        metadata={"trigger": "schedule", "slot": seen.isoformat()},
        skip_refused=True,
    )
    log.info(
        "project %s: slot %s claimed, %d job(s) created, next run at %s",
        project_id,
        seen.isoformat(),
        len(job_ids),
        following.isoformat(),
    )
    return job_ids


def adopt_unscheduled(session: Session, now: datetime) -> int:
    """Give a first slot to scheduled projects that have none: those whose recurrence was
    set before schedules existed (the migration adds ``next_run_at`` empty) or written
    without the projects service. Idempotent: only empty slots are filled."""
    adopted = 0
    for recurrence in RECURRENCES:
        if recurrence == MANUAL:
            continue
        result = session.execute(
            update(Project)
            .where(
                Project.recurrence == recurrence,
                Project.recurrence_status == ACTIVE,
                Project.next_run_at.is_(None),
            )
            .values(next_run_at=first_slot(recurrence, now), updated_at=Project.updated_at)
            .execution_options(synchronize_session=False)
        )
        adopted += int(getattr(result, "rowcount", 0) or 0)
    return adopted


def tick(now: datetime | None = None) -> TickReport:
    """One ``schedules.tick``: settle finished cached jobs, schedule projects that have no
    slot yet, then run the due slots."""
    now = now or utcnow()
    report = TickReport()
    with session_scope() as session:
        report.cached_jobs_ended = cached_jobs.settle_ended(session)
        report.projects_adopted = adopt_unscheduled(session, now)
    return claim_due_projects(now, report)
