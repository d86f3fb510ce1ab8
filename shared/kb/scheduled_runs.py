"""Sync jobs on their slots: the ``kb_sync`` periodic kind of the engine
(:mod:`shared.engine.periodic`).

The engine claims each due slot of a sync job once and moves it to the next slot after
now (missed slots are skipped, and a slot runs once); here a slot starts a run, unless
the job's previous run still goes (the slot is skipped, not queued) or the job is no
longer scheduled. A scheduled job with no slot left completes when its last run ends
(:func:`shared.kb.runs.on_runs_finished`), or at the next tick when none is going.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from shared.db import UnitOfWork
from shared.engine.periodic import PeriodicKind
from shared.kb import schedule
from shared.kb.models import SyncJob, SyncJobStatus, SyncRun
from shared.kb.sync import KB_SYNC, RUNNING, current_run, start_run
from shared.models import PeriodicSchedule

log = logging.getLogger(__name__)


def next_slot(
    session: Session, sync_job_id: uuid.UUID, slot: datetime, now: datetime
) -> datetime | None:
    """The job's first slot strictly after now, or None when it has none left (or is no
    longer scheduled)."""
    job = session.get(SyncJob, sync_job_id)
    if job is None or job.status != SyncJobStatus.SCHEDULED:
        return None
    return schedule.next_slot_after(job.start_time, job.end_time, job.interval_seconds, now)


def run_slot(work: UnitOfWork, sync_job_id: uuid.UUID, slot: datetime) -> list[uuid.UUID]:
    """Start the slot's run; none while the job's run still goes."""
    session = work.session
    # Locked as run-now, pause and the run's end lock it: one run at a time.
    job = session.get(SyncJob, sync_job_id, with_for_update=True)
    if job is None or job.status != SyncJobStatus.SCHEDULED:
        return []
    if current_run(session, job.id) is not None:
        log.info("sync job %s: slot %s skipped, its run still goes", job.id, slot.isoformat())
        return []
    return [start_run(session, job, trigger="schedule", slot=slot)]


def complete_ended(work: UnitOfWork, now: datetime) -> int:
    """Scheduled jobs with no slot left and no run going become completed."""
    has_slot = and_(
        PeriodicSchedule.kind == KB_SYNC,
        PeriodicSchedule.owner_id == SyncJob.id,
        PeriodicSchedule.next_slot_at.is_not(None),
    )
    running = and_(SyncRun.sync_job_id == SyncJob.id, SyncRun.status == RUNNING)
    ended = work.session.scalars(
        select(SyncJob)
        .where(
            SyncJob.status == SyncJobStatus.SCHEDULED,
            ~select(PeriodicSchedule.id).where(has_slot).exists(),
            ~select(SyncRun.job_id).where(running).exists(),
        )
        .limit(1000)
        .with_for_update(skip_locked=True)
    ).all()
    for job in ended:
        job.status, job.updated_at = SyncJobStatus.COMPLETED, now
    return len(ended)


SYNC_SLOTS = PeriodicKind(KB_SYNC, next_slot=next_slot, run_slot=run_slot, reconcile=complete_ended)
