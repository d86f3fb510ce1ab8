"""Sync jobs (Smart DB's ``/jobs``): created as the seed documents them, run on their
slots, paused, resumed, run now, and read back with their history.

Each run is a Job of type ``kb_sync`` (see :mod:`shared.kb.runs`). A sync job's slots are
an engine schedule of kind ``kb_sync`` (:mod:`shared.kb.scheduled_runs` says what a slot
does); this module sets it as the job is created, paused, resumed and deleted, each time
locking the schedule before the job (the order in which a tick running its slot takes
them).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shared import instants
from shared.db import UnitOfWork
from shared.engine import periodic, quotas
from shared.engine.cancel import cancel_executions
from shared.engine.jobs import dispatch_after_commit, new_job
from shared.engine.retry import retry_failed
from shared.errors import Conflict, DomainError, InvalidInput, NotFound
from shared.kb import schedule
from shared.kb.check_slots import check_slot
from shared.kb.models import DataSource, KnowledgeBase, SyncJob, SyncJobStatus, SyncRun
from shared.kb.reading import TableMissing, missing_columns, reflect_table
from shared.kb.source_connections import SourceFailed, source_connection
from shared.kb.sources import NAME, source_engine
from shared.messaging import publisher
from shared.models import utcnow
from shared.scoping import get_named, list_named
from shared.settings import get_settings

log = logging.getLogger(__name__)

KB_SYNC = "kb_sync"  # the job type (shared.kb.job_type)
RUNNING = "running"


class SyncJobError(DomainError):
    """A create refused with one of the seed's codes. The seed answers every one with
    400 and ``{code, message, details}``."""

    http_status = 400


def refuse(code: str, message: str, details: list[str]) -> SyncJobError:
    return SyncJobError(message, details=details, code=code)


# -- creating ------------------------------------------------------------------------------


@dataclass
class Problems:
    """Every problem of a create request, each with the code it would answer alone."""

    found: list[tuple[str, str]] = field(default_factory=list)

    def add(self, code: str, detail: str) -> None:
        self.found.append((code, detail))

    def raise_if_any(self) -> None:
        """One answer for all of them: INVALID_REQUEST when any field is missing or
        malformed (listing every problem, as the seed's example does), else the code of the
        first problem found."""
        if not self.found:
            return
        codes = [code for code, _ in self.found]
        details = [detail for _, detail in self.found]
        code = "INVALID_REQUEST" if "INVALID_REQUEST" in codes else codes[0]
        raise refuse(code, MESSAGES[code], details)


MESSAGES = {
    "INVALID_REQUEST": "Invalid job configuration",
    "DUPLICATE_JOB": "Job with the same name already exists",
    "INVALID_TABLE": "Source table does not exist or is inaccessible",
    "INVALID_KB": "Knowledge base does not exist",
    "INVALID_INTERVAL": "Interval format is not supported",
    "INVALID_DATETIME": "Start or end time format is invalid",
    "LIMIT_EXCEEDED": "Maximum number of active jobs reached",
}


@dataclass(frozen=True)
class Window:
    every: int
    start: datetime
    end: datetime


def check_schedule(body: dict[str, Any], problems: Problems) -> Window | None:
    """The interval and the window, from whichever of them are present as strings."""
    every = start = end = None
    interval = body.get("interval")
    if isinstance(interval, str):
        try:
            every = schedule.interval_seconds(interval)
        except schedule.BadInterval as exc:
            problems.add("INVALID_INTERVAL", str(exc))
    times: dict[str, datetime] = {}
    for name in ("start_time", "end_time"):
        value = body.get(name)
        if isinstance(value, str):
            try:
                times[name] = schedule.parse_time(value)
            except instants.OutOfRange as exc:
                problems.add("INVALID_DATETIME", f"{name} is out of range: {exc}")
            except ValueError:
                problems.add("INVALID_DATETIME", f"{name} is not an ISO 8601 time: {value!r}")
    start, end = times.get("start_time"), times.get("end_time")
    if start is not None and end is not None:
        if end <= start:
            problems.add("INVALID_DATETIME", "end_time must be after start_time")
        elif end - start > schedule.MAX_DURATION:
            problems.add("INVALID_DATETIME", "the job may last at most 30 days")
    if every is None or start is None or end is None:
        return None
    return Window(every, start, end)


def split_source_table(source_table: str) -> tuple[str, str]:
    """``database.table`` as its two names (SyncJobError INVALID_TABLE otherwise)."""
    parts = source_table.split(".")
    if len(parts) != 2 or not all(NAME.match(p) for p in parts):
        raise refuse(
            "INVALID_TABLE",
            MESSAGES["INVALID_TABLE"],
            [f"source_table must be database.table (letters, digits, _): {source_table!r}"],
        )
    return parts[0], parts[1]


def check_table(
    session: Session,
    organisation_id: uuid.UUID,
    source_table: str,
    *,
    kb: KnowledgeBase,
    content_columns: list[str],
    filter_column: str,
) -> tuple[DataSource, str]:
    """The source and table, once the table exists and has every column the job and its
    knowledge base name (each problem raised with its code)."""
    database, table_name = split_source_table(source_table)
    source = session.scalar(
        select(DataSource).where(
            DataSource.organisation_id == organisation_id, DataSource.name == database
        )
    )
    if source is None:
        raise refuse("INVALID_TABLE", MESSAGES["INVALID_TABLE"], [f"unknown database {database!r}"])
    seconds = get_settings().source_check_seconds
    try:
        with (
            check_slot(organisation_id),
            source_connection(source_engine(source), seconds) as connection,
        ):
            table = reflect_table(connection, table_name)
    except TableMissing:
        raise refuse(
            "INVALID_TABLE",
            MESSAGES["INVALID_TABLE"],
            [f"table {table_name!r} does not exist in database {database!r}"],
        ) from None
    except (SQLAlchemyError, InvalidInput, SourceFailed) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        raise refuse(
            "INVALID_TABLE",
            MESSAGES["INVALID_TABLE"],
            [f"database {database!r} cannot be read: {reason}"],
        ) from exc
    problems = [
        f"content_columns: {c!r} is not a column of {source_table}"
        for c in missing_columns(table, content_columns)
    ]
    problems += [
        f"filter_column: {c!r} is not a column of {source_table}"
        for c in missing_columns(table, [filter_column])
    ]
    problems += [
        f"knowledge base {kb.name!r}: its column {c!r} is not a column of {source_table}"
        for c in missing_columns(table, [c for c in [kb.id_column, *kb.metadata_columns] if c])
    ]
    if problems:
        raise refuse("INVALID_REQUEST", MESSAGES["INVALID_REQUEST"], problems)
    return source, table_name


def active_jobs(session: Session, organisation_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                SyncJob.organisation_id == organisation_id,
                SyncJob.status != SyncJobStatus.COMPLETED,
            )
        )
        or 0
    )


def create_sync_job(
    session: Session, organisation_id: uuid.UUID, body: dict[str, Any], window: Window
) -> SyncJob:
    """A new sync job from a request whose fields are well formed (see the API schema),
    checked in the seed's terms: the name is free, the knowledge base exists, the account
    is under its limit, then the table and its columns (the only check that connects)."""
    name = body["job_name"]
    if not NAME.match(name):
        raise refuse(
            "INVALID_REQUEST",
            MESSAGES["INVALID_REQUEST"],
            [f"job_name must be a letter or _ then letters, digits or _: {name!r}"],
        )
    kb_name = body["kb_name"]
    if not NAME.match(kb_name):
        raise refuse("INVALID_KB", MESSAGES["INVALID_KB"], [f"invalid kb_name {kb_name!r}"])
    taken = session.scalar(
        select(SyncJob.id).where(SyncJob.organisation_id == organisation_id, SyncJob.name == name)
    )
    if taken is not None:
        raise refuse("DUPLICATE_JOB", MESSAGES["DUPLICATE_JOB"], [f"job {name!r} exists"])
    split_source_table(body["source_table"])
    kb = session.scalar(
        select(KnowledgeBase).where(
            KnowledgeBase.organisation_id == organisation_id, KnowledgeBase.name == kb_name
        )
    )
    if kb is None:
        raise refuse(
            "INVALID_KB", MESSAGES["INVALID_KB"], [f"knowledge base {kb_name!r} does not exist"]
        )
    limit = get_settings().kb_sync_max_active_jobs
    if active_jobs(session, organisation_id) >= limit:
        raise refuse(
            "LIMIT_EXCEEDED",
            MESSAGES["LIMIT_EXCEEDED"],
            [f"at most {limit} active jobs per account: delete or let one finish first"],
        )
    source, table_name = check_table(
        session,
        organisation_id,
        body["source_table"],
        kb=kb,
        content_columns=body["content_columns"],
        filter_column=body["filter_column"],
    )
    now = utcnow()
    first = schedule.first_run(window.start, window.end, window.every, now)
    job = SyncJob(
        organisation_id=organisation_id,
        name=name,
        source_id=source.id,
        source_table=body["source_table"],
        table_name=table_name,
        kb_id=kb.id,
        content_columns=list(body["content_columns"]),
        filter_column=body["filter_column"],
        interval=body["interval"],
        interval_seconds=window.every,
        start_time=window.start,
        end_time=window.end,
        status=SyncJobStatus.SCHEDULED if first is not None else SyncJobStatus.COMPLETED,
        watermark=None,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    _schedule(session, job, first)
    return job


def _schedule(session: Session, job: SyncJob, at: datetime | None) -> None:
    """The job's next slot (the kind of its schedule is its runs' job type)."""
    periodic.schedule(
        session, kind=KB_SYNC, owner_id=job.id, organisation_id=job.organisation_id, at=at
    )


# -- reading ---------------------------------------------------------------------------------


def get_sync_job(session: Session, organisation_id: uuid.UUID, name: str) -> SyncJob:
    return get_named(session, SyncJob, organisation_id, name, "job")


def next_run_at(session: Session, job: SyncJob) -> datetime | None:
    """When the job's next slot falls: None unless it is scheduled and has one left."""
    if job.status != SyncJobStatus.SCHEDULED:
        return None
    return periodic.next_slot_at(session, kind=KB_SYNC, owner_id=job.id)


def list_sync_jobs(session: Session, organisation_id: uuid.UUID) -> list[SyncJob]:
    return list_named(session, SyncJob, organisation_id)


def current_run(session: Session, sync_job_id: uuid.UUID) -> SyncRun | None:
    return session.scalar(
        select(SyncRun).where(SyncRun.sync_job_id == sync_job_id, SyncRun.status == RUNNING)
    )


def runs_of(session: Session, sync_job_id: uuid.UUID, limit: int) -> list[SyncRun]:
    return list(
        session.scalars(
            select(SyncRun)
            .where(SyncRun.sync_job_id == sync_job_id)
            .order_by(SyncRun.run_start.desc(), SyncRun.job_id)
            .limit(limit)
        )
    )


def last_run(session: Session, sync_job_id: uuid.UUID) -> SyncRun | None:
    runs = runs_of(session, sync_job_id, 1)
    return runs[0] if runs else None


# -- pause, resume, run now, delete -------------------------------------------------------------


def _locked(session: Session, organisation_id: uuid.UUID, name: str) -> SyncJob:
    job = get_sync_job(session, organisation_id, name)
    periodic.lock_schedule(session, kind=KB_SYNC, owner_id=job.id)
    session.refresh(job, with_for_update=True)
    return job


def pause(session: Session, organisation_id: uuid.UUID, name: str) -> None:
    """No slot runs until resumed (a run going now finishes)."""
    job = _locked(session, organisation_id, name)
    if job.status == SyncJobStatus.COMPLETED:
        raise Conflict(f"job {name!r} has completed: it has no slots left to pause")
    job.status, job.updated_at = SyncJobStatus.PAUSED, utcnow()
    _schedule(session, job, None)


def resume(session: Session, organisation_id: uuid.UUID, name: str) -> None:
    """Scheduled again from the next slot (the slots missed while paused are not caught
    up); a job that never ran runs now. Past its end_time, it completes."""
    job = _locked(session, organisation_id, name)
    if job.status == SyncJobStatus.COMPLETED:
        raise Conflict(f"job {name!r} has completed: it has no slots left to resume")
    if job.status == SyncJobStatus.SCHEDULED:
        return
    limit = get_settings().kb_sync_max_active_jobs
    if active_jobs(session, organisation_id) > limit:
        raise refuse(
            "LIMIT_EXCEEDED",
            MESSAGES["LIMIT_EXCEEDED"],
            [f"at most {limit} active jobs per account"],
        )
    now = utcnow()
    never_ran = last_run(session, job.id) is None
    nxt = (
        schedule.first_run(job.start_time, job.end_time, job.interval_seconds, now)
        if never_ran
        else schedule.next_slot_after(job.start_time, job.end_time, job.interval_seconds, now)
    )
    job.updated_at = now
    _schedule(session, job, nxt)
    running = current_run(session, job.id) is not None
    job.status = SyncJobStatus.SCHEDULED if nxt is not None or running else SyncJobStatus.COMPLETED


def run_now(
    work: UnitOfWork, organisation_id: uuid.UUID, name: str, trigger: str = "manual"
) -> uuid.UUID:
    """Start a run at once, whatever the schedule (a paused or completed job too); its
    slots stay as they are. Conflict while a run is going. The run's Job is dispatched
    once the caller's unit of work has committed."""
    job = _locked(work.session, organisation_id, name)
    if current_run(work.session, job.id) is not None:
        raise Conflict(
            f"job {name!r} has a run in progress: wait for it to end", code="RUN_IN_PROGRESS"
        )
    # One job; its executions (batches of rows) are counted when it is planned.
    quotas.admit(work.session, organisation_id, jobs=1, executions=1)
    run_id = start_run(work.session, job, trigger=trigger, slot=None)
    dispatch_after_commit(work, [run_id])
    return run_id


def retry_run(work: UnitOfWork, organisation_id: uuid.UUID, name: str, run_id: uuid.UUID) -> None:
    """Run the failed batches of the job's latest run again (see
    :mod:`shared.engine.retry`): its history row is running again
    (:func:`shared.kb.runs.reopen_retried_runs`) until the run ends again. NotFound for a
    run not of this job; Conflict while a run is going, for a run that did not fail, or
    for one that is not the latest. The run's batches are dispatched after the commit."""
    job = _locked(work.session, organisation_id, name)  # first, as a run's start does
    run = work.session.get(SyncRun, run_id)
    if run is None or run.sync_job_id != job.id:
        raise NotFound(f"run {run_id} of job {name!r} not found", code="NOT_FOUND")
    if current_run(work.session, job.id) is not None:
        raise Conflict(
            f"job {name!r} has a run in progress: wait for it to end", code="RUN_IN_PROGRESS"
        )
    retry_failed(work, organisation_id, run_id, KB_SYNC, what="Batch")


def delete(work: UnitOfWork, organisation_id: uuid.UUID, name: str) -> None:
    """The job and its history go; a run going now is canceled (its Job stays, canceled)."""
    job = _locked(work.session, organisation_id, name)
    run = current_run(work.session, job.id)
    if run is not None:
        cancel_executions(work.session, run.job_id)
        work.after_commit(publisher.publish_outbox_drain)  # the run's job.finished
    periodic.drop_schedule(work.session, kind=KB_SYNC, owner_id=job.id)
    work.session.delete(job)


# -- a run ------------------------------------------------------------------------------------------


def start_run(session: Session, sync: SyncJob, *, trigger: str, slot: datetime | None) -> uuid.UUID:
    """Write a run: its Job (planned when fanned out: one execution per batch of rows)
    and its history row. The caller dispatches the Job after commit."""
    now = utcnow()
    job = new_job(
        organisation_id=sync.organisation_id,
        job_type=KB_SYNC,
        total=1,  # until planned: the fan-out counts the batches
        payload={"sync_job_id": str(sync.id), "sync_job": sync.name},
        metadata={"trigger": trigger, **({"slot": slot.isoformat()} if slot else {})},
    )
    session.add(job)
    session.flush()
    session.add(
        SyncRun(
            job_id=job.id,
            sync_job_id=sync.id,
            trigger=trigger,
            slot_at=slot,
            run_start=now,
            status=RUNNING,
            rows_read=0,
            rows_written=0,
            rows_without_filter_value=0,
            progress={},
        )
    )
    session.flush()
    return job.id
