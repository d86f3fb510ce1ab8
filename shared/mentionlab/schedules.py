"""Schedules: a project's recurrence as a periodic kind of the engine
(:mod:`shared.engine.periodic`), whose slot runs the project's cached jobs.

A project whose ``recurrence`` is daily, weekly, biweekly or monthly and whose
``recurrence_status`` is active has an engine schedule of kind
``mentionlab.recurrence``. The engine's tick claims each due slot once (whatever the
number of beats) and advances it to the first slot strictly after now; this module says
when that is (:func:`next_run`) and what the slot does (:func:`run_slot`: one Job per
cached job, in the claim's transaction). A project changed meanwhile (made manual,
paused) runs nothing and is left with no slot.

Slot arithmetic and what setting a recurrence does live in
:mod:`shared.mentionlab.recurrence`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from shared.db import UnitOfWork
from shared.engine import periodic
from shared.mentionlab import cached_jobs
from shared.mentionlab.models import Project
from shared.mentionlab.recurrence import (
    ACTIVE,
    MANUAL,
    RECURRENCE_KIND,
    RECURRENCES,
    first_slot,
    is_scheduled,
    next_slot,
)
from shared.models import PeriodicSchedule

log = logging.getLogger(__name__)

ADOPT_BATCH = 1000


def next_run(
    session: Session, project_id: uuid.UUID, slot: datetime, now: datetime
) -> datetime | None:
    """The project's slot after ``slot`` that is strictly after now (None: not scheduled)."""
    project = session.get(Project, project_id)
    if project is None or not is_scheduled(project) or project.recurrence not in RECURRENCES:
        return None
    return next_slot(project.recurrence, slot, now)


def run_slot(work: UnitOfWork, project_id: uuid.UUID, slot: datetime) -> list[uuid.UUID]:
    """Write one Job per cached job of the project for the slot (a plan that cannot run
    is logged and skipped); the engine dispatches them after commit."""
    project = work.session.get(Project, project_id)
    if project is None or not is_scheduled(project):
        return []
    job_ids = cached_jobs.run_cached_jobs(
        work.session,
        project,
        created_by_user_id=None,
        metadata={"trigger": "schedule", "slot": slot.isoformat()},
        skip_refused=True,
    )
    log.info(
        "project %s: slot %s run, %d job(s) created", project_id, slot.isoformat(), len(job_ids)
    )
    return job_ids


def adopt_unscheduled(work: UnitOfWork, now: datetime) -> int:
    """Give a first slot to scheduled projects that have none: those whose recurrence was
    written without the projects service (an import, a hand-made fix). Idempotent: a
    project with a slot is left alone."""
    session = work.session
    has_slot = and_(
        PeriodicSchedule.kind == RECURRENCE_KIND,
        PeriodicSchedule.owner_id == Project.id,
        PeriodicSchedule.next_slot_at.is_not(None),
    )
    unscheduled = session.execute(
        select(Project.id, Project.organisation_id, Project.recurrence)
        .where(
            Project.recurrence != MANUAL,
            Project.recurrence.in_(RECURRENCES),
            Project.recurrence_status == ACTIVE,
            ~select(PeriodicSchedule.id).where(has_slot).exists(),
        )
        .limit(ADOPT_BATCH)
    ).all()
    for project_id, organisation_id, recurrence in unscheduled:
        periodic.schedule(
            session,
            kind=RECURRENCE_KIND,
            owner_id=project_id,
            organisation_id=organisation_id,
            at=first_slot(recurrence, now),
        )
    return len(unscheduled)


RECURRENCE = periodic.PeriodicKind(
    RECURRENCE_KIND, next_slot=next_run, run_slot=run_slot, reconcile=adopt_unscheduled
)
