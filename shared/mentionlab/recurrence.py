"""Recurrence: when a project's scheduled runs fall, and what changing it does.

A project whose ``recurrence`` is daily, weekly, biweekly or monthly and whose
``recurrence_status`` is active has a next run: the engine schedule of kind
``mentionlab.recurrence`` whose owner is the project. When a recurrence is set (or
changed, or resumed) the first run is one interval after now, never at once: saving a
project must not start work behind the client's back (POST /api/cached-jobs/trigger runs
now). Re-saving the same recurrence keeps the slot it had. Pausing a project switches its
cached jobs off; resuming switches them back on. What a slot does is
:mod:`shared.mentionlab.schedules`.
"""

from __future__ import annotations

import calendar
import uuid
from datetime import datetime, timedelta

from sqlalchemy import case, update
from sqlalchemy.orm import Session

from shared.engine import periodic
from shared.mentionlab.models import CachedJob, CachedJobStatus, Project
from shared.models import utcnow

RECURRENCE_KIND = "mentionlab.recurrence"
MANUAL = "manual"
ACTIVE = "active"
PAUSED = "paused"
INTERVAL_DAYS = {"daily": 1, "weekly": 7, "biweekly": 14}
MONTHLY = "monthly"
RECURRENCES = (MANUAL, *INTERVAL_DAYS, MONTHLY)


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
    """Bring the project's schedule and its cached jobs' status in line with its
    recurrence after a create or an update (called by the projects service)."""
    now = now or utcnow()
    # The schedule first: a tick running the project's slot holds it while it writes the
    # cached jobs, so taking them in the other order could deadlock with it.
    periodic.lock_schedule(session, kind=RECURRENCE_KIND, owner_id=project.id)
    current = periodic.next_slot_at(session, kind=RECURRENCE_KIND, owner_id=project.id)
    if not is_scheduled(project):
        at = None
    elif current is None or project.recurrence != previous_recurrence or previous_status != ACTIVE:
        at = first_slot(project.recurrence, now)
    else:
        at = current
    if at != current:
        periodic.schedule(
            session,
            kind=RECURRENCE_KIND,
            owner_id=project.id,
            organisation_id=project.organisation_id,
            at=at,
        )
    if project.recurrence_status != previous_status:
        session.flush()
        switch_project(session, project.id, paused=project.recurrence_status == PAUSED)


def switch_project(session: Session, project_id: uuid.UUID, *, paused: bool) -> int:
    """Mark a project's cached jobs inactive (paused) or bring them back (resumed): back to
    ``pending`` when never run, else ``active`` (which reads as ``ended`` once its job is)."""
    if paused:
        stmt = (
            update(CachedJob)
            .where(
                CachedJob.project_id == project_id,
                CachedJob.status != CachedJobStatus.INACTIVE.value,
            )
            .values(status=CachedJobStatus.INACTIVE.value)
        )
    else:
        stmt = (
            update(CachedJob)
            .where(
                CachedJob.project_id == project_id,
                CachedJob.status == CachedJobStatus.INACTIVE.value,
            )
            .values(
                status=case(
                    (CachedJob.last_job_id.is_(None), CachedJobStatus.PENDING.value),
                    else_=CachedJobStatus.ACTIVE.value,
                )
            )
        )
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
