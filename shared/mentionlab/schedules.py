"""Schedules: a project's recurrence drives scheduled runs of its cached jobs.

A project whose ``recurrence`` is daily, weekly, biweekly or monthly and whose
``recurrence_status`` is active has a ``next_run_at`` (UTC). Beat publishes
``schedules.tick`` every few seconds; a tick claims each due project with a
compare-and-set on ``next_run_at`` — ``UPDATE projects SET next_run_at = :next WHERE id =
:id AND next_run_at = :seen`` — so that of several beats (or several ticks in flight) only
one wins a slot. The claim and the slot's Jobs commit in the same transaction: a slot is
either run exactly once or not claimed at all. Missed slots are not caught up: the next
slot is the first one strictly after now.

Slot arithmetic and what setting a recurrence does live in
:mod:`shared.mentionlab.recurrence`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db import session_scope, unit_of_work
from shared.engine.jobs import dispatch_after_commit
from shared.mentionlab import cached_jobs
from shared.mentionlab.recurrence import ACTIVE, MANUAL, RECURRENCES, first_slot, next_slot
from shared.models import Project, utcnow

log = logging.getLogger(__name__)

CLAIM_BATCH = 100


# ---------------------------------------------------------------------------------------
# The tick.


@dataclass
class TickReport:
    """What one tick did."""

    projects_claimed: int = 0
    projects_adopted: int = 0
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
    for project_id, seen, recurrence in due:
        if recurrence not in RECURRENCES or seen is None:  # pragma: no cover - defensive
            continue
        with unit_of_work() as work:
            job_ids = _claim_and_run(work.session, project_id, seen, recurrence, now)
            if job_ids is not None:
                dispatch_after_commit(work, job_ids, partial(_count_unpublished, report, job_ids))
        if job_ids is None:
            continue
        report.projects_claimed += 1
        report.jobs_created += job_ids
    return report


def _count_unpublished(report: TickReport, job_ids: list[uuid.UUID], published: int) -> None:
    report.jobs_undispatched += len(job_ids) - published


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
    """One ``schedules.tick``: schedule projects that have no slot yet, then run the due
    slots."""
    now = now or utcnow()
    report = TickReport()
    with session_scope() as session:
        report.projects_adopted = adopt_unscheduled(session, now)
    return claim_due_projects(now, report)
