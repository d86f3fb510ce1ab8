"""A sync run, as a Job of type ``kb_sync``: planned into batches of rows, each batch
written by one execution, the watermark moved as batches commit, the history row closed
when the Job ends.

- **Plan** (the type's preparer, in the fan-out): reflect the table, check its columns
  are still there, and cut ``filter_column >= watermark`` into batches
  (:func:`shared.kb.reading.plan_run`). The Job's total becomes the number of batches (0:
  nothing new, and the run completes at once). A table that is gone fails the run with
  the reason, before any execution.
- **Write** (:func:`write_batch`, run by the worker's executor): read the batch's rows,
  drop the ones the watermark already covers, embed and upsert them, and record the batch
  in the same transaction. The watermark moves to the end of the batches committed in
  order: a batch that fails leaves it where the earlier ones put it, and the next run
  starts from there.
- **End** (the ``job.finished`` consumer): the history row gets its end, status and error.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.engine import periodic
from shared.engine.job_types import PlanFailed, PlannedItem
from shared.engine.jobs import record_preparation
from shared.engine.outbox import Event
from shared.errors import Conflict, InvalidInput
from shared.kb.embedders import EmbeddingFailed
from shared.kb.knowledge import prepare_rows, write_rows
from shared.kb.models import DataSource, KnowledgeBase, SyncJob, SyncJobStatus, SyncRun
from shared.kb.reading import (
    SourceShape,
    TableMissing,
    Watermark,
    encode,
    plan_run,
    read_batch,
    reflect_table,
    row_key,
    shape_of,
)
from shared.kb.source_connections import SourceFailed, source_connection
from shared.kb.sources import source_engine
from shared.kb.sync import KB_SYNC, RUNNING
from shared.models import TERMINAL_JOB_STATUSES, Execution, ExecutionStatus, Job, utcnow
from shared.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """What a run's preparer and its batches need, read in one transaction."""

    run: SyncRun
    sync: SyncJob
    kb: KnowledgeBase
    source: DataSource


def context_of(session: Session, job_id: uuid.UUID) -> RunContext | None:
    run = session.get(SyncRun, job_id)
    if run is None:
        return None
    sync = session.get(SyncJob, run.sync_job_id)
    if sync is None:
        return None
    kb = session.get(KnowledgeBase, sync.kb_id)
    source = session.get(DataSource, sync.source_id)
    if kb is None or source is None:
        return None
    return RunContext(run, sync, kb, source)


def read_seconds() -> float:
    """How long one step of a run (its plan, or one batch) may use its source connection."""
    return get_settings().source_read_seconds


def describe_source_error(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]


def shape_for(connection: Any, ctx: RunContext) -> SourceShape:
    """The table's shape today (TableMissing, or KeyError naming a column gone)."""
    table = reflect_table(connection, ctx.sync.table_name)
    return shape_of(
        table,
        filter_column=ctx.sync.filter_column,
        content_columns=ctx.sync.content_columns,
        id_column=ctx.kb.id_column,
        metadata_columns=ctx.kb.metadata_columns,
    )


# -- plan -----------------------------------------------------------------------------------------


def prepare_run(job_id: uuid.UUID) -> None:
    """The ``kb_sync`` preparer: plan the run's batches from the watermark it starts at."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or "batches" in job.payload:
            return
        ctx = context_of(session, job_id)
        if ctx is None:
            raise PlanFailed("the sync job of this run was deleted")
        watermark_json = ctx.sync.watermark
    where = ctx.sync.source_table
    try:
        with source_connection(source_engine(ctx.source), read_seconds()) as connection:
            shape = shape_for(connection, ctx)
            plan = plan_run(
                connection,
                shape,
                Watermark.from_json(watermark_json),
                get_settings().kb_sync_batch_rows,
            )
    except TableMissing:
        raise PlanFailed(f"source table {where} does not exist (dropped or renamed?)") from None
    except KeyError as exc:
        raise PlanFailed(f"column {exc.args[0]!r} is no longer in {where}") from None
    except (SQLAlchemyError, InvalidInput, SourceFailed) as exc:
        raise PlanFailed(f"cannot read {where}: {describe_source_error(exc)}") from exc
    with session_scope() as session:
        prepared = {"batches": plan.batches, "watermark": watermark_json}
        if not record_preparation(session, job_id, prepared, len(plan.batches)):
            return
        session.execute(
            update(SyncRun)
            .where(SyncRun.job_id == job_id)
            .values(
                watermark_from=watermark_json,
                rows_without_filter_value=plan.rows_without_filter_value,
            )
        )
    log.info("sync run %s: %d rows in %d batches", job_id, plan.rows, len(plan.batches))


def plan_batches(session: Session, job: Job) -> Iterator[PlannedItem]:
    """The ``kb_sync`` planner: one execution per planned batch."""
    for batch in job.payload.get("batches") or []:
        yield PlannedItem(key=str(batch["n"]), item=batch)


# -- write a batch ----------------------------------------------------------------------------------


class BatchFailed(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def write_batch(job_id: uuid.UUID, batch: dict[str, Any]) -> dict[str, Any]:
    """Read, embed and upsert one batch, and record it with the watermark it allows, in
    one transaction. Writing a batch again (a retry after a crash) writes the same
    chunks and counts nothing twice."""
    with session_scope() as session:
        ctx = context_of(session, job_id)
        job = session.get(Job, job_id)
        if ctx is None or job is None:
            raise BatchFailed("the sync job of this run was deleted", retryable=False)
        session.expunge_all()
    watermark = Watermark.from_json(job.payload.get("watermark"))
    where = ctx.sync.source_table
    clock = time.perf_counter()
    try:
        with source_connection(source_engine(ctx.source), read_seconds()) as connection:
            shape = shape_for(connection, ctx)
            rows = read_batch(connection, shape, batch)
    except TableMissing:
        raise BatchFailed(f"source table {where} does not exist", retryable=False) from None
    except KeyError as exc:
        raise BatchFailed(
            f"column {exc.args[0]!r} is no longer in {where}", retryable=False
        ) from None
    except SourceFailed as exc:  # no answer in time may pass; a broken protocol will not
        raise BatchFailed(f"cannot read {where}: {exc.reason}", retryable=exc.timed_out) from exc
    except DBAPIError as exc:  # a connection lost, a timeout: another attempt may do
        raise BatchFailed(
            f"cannot read {where}: {describe_source_error(exc)}",
            retryable=exc.connection_invalidated or _transient(exc),
        ) from exc
    read_at = time.perf_counter()
    keys = [row_key(shape, row) for row in rows]
    fresh = [
        i
        for i, (row, key) in enumerate(zip(rows, keys, strict=True))
        if watermark is None or not watermark.covers(row[shape.filter_column.name], key)
    ]
    new_rows = [rows[i] for i in fresh]
    row_ids = [_kb_row_id(ctx.kb, rows[i], keys[i]) for i in fresh]
    try:
        prepared = prepare_rows(ctx.kb, new_rows, ctx.sync.content_columns, row_ids)
    except EmbeddingFailed as exc:  # an embeddings endpoint's 429 passes; a bad key not
        raise BatchFailed(f"embedding failed: {exc.reason}", retryable=exc.retryable) from exc
    embedded_at = time.perf_counter()
    rows_written = sum(
        1 for row in new_rows if any(row.get(c) is not None for c in ctx.sync.content_columns)
    )
    with session_scope() as session:
        kb = session.get(KnowledgeBase, ctx.kb.id)
        if kb is None:
            raise BatchFailed("the knowledge base was deleted", retryable=False)
        chunks = write_rows(session, kb, prepared)
        record_batch(
            session,
            job_id,
            batch,
            rows=rows,
            keys=keys,
            filter_column=shape.filter_column.name,
            rows_read=len(new_rows),
            rows_written=rows_written,
        )
    written_at = time.perf_counter()
    return {
        "rows_read": len(new_rows),
        "rows_written": rows_written,
        "chunks": chunks,
        "timings_ms": {
            "read": round(1000 * (read_at - clock), 2),
            "embed": round(1000 * (embedded_at - read_at), 2),
            "write": round(1000 * (written_at - embedded_at), 2),
        },
    }


def _kb_row_id(kb: KnowledgeBase, row: dict[str, Any], key: str) -> str:
    if kb.id_column and row.get(kb.id_column) is not None:
        return str(row[kb.id_column])
    return key


def _transient(exc: DBAPIError) -> bool:
    """Whether the source's error is one that may pass (a connection or an operational
    error), rather than one that will repeat (a missing column, a permission)."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def record_batch(
    session: Session,
    job_id: uuid.UUID,
    batch: dict[str, Any],
    *,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    filter_column: str,
    rows_read: int,
    rows_written: int,
) -> None:
    """Note the batch as committed and move the watermark over the batches committed in
    order (under the run's row lock: batches of one run commit one at a time here)."""
    run = session.get(SyncRun, job_id, with_for_update=True)
    if run is None:
        return
    progress = dict(run.progress or {})
    done = dict(progress.get("done") or {})
    n = int(batch["n"])
    if str(n) in done:
        return  # written again after a crash: counted already
    last_value = batch["to"][0]
    done[str(n)] = {
        "to": last_value,
        "ids": [
            k for row, k in zip(rows, keys, strict=True) if encode(row[filter_column]) == last_value
        ],
    }
    prefix = int(progress.get("prefix", -1))
    moved = prefix
    while str(moved + 1) in done:
        moved += 1
    progress.update(done=done, prefix=moved)
    run.progress = progress
    run.rows_read += rows_read
    run.rows_written += rows_written
    if moved > prefix:
        value = done[str(moved)]["to"]
        ids: set[str] = set()
        k = moved
        while k >= 0 and done[str(k)]["to"] == value:
            ids.update(done[str(k)]["ids"])
            k -= 1
        earlier = run.watermark_from or {}
        if k < 0 and earlier.get("value") == value:
            ids.update(earlier.get("ids") or [])
        session.execute(
            update(SyncJob)
            .where(SyncJob.id == run.sync_job_id)
            .values(watermark={"value": value, "ids": sorted(ids)})
        )


# -- end -------------------------------------------------------------------------------------------


def on_runs_finished(session: Session, events: Sequence[Event]) -> None:
    """Close the history rows of the ``kb_sync`` Jobs that ended; a job past its last
    slot completes with its last run."""
    job_ids = [e.job_id for e in events if e.payload.get("type") == KB_SYNC and e.job_id]
    if not job_ids:
        return
    for job in session.scalars(select(Job).where(Job.id.in_(job_ids))):
        run = session.get(SyncRun, job.id, with_for_update=True)
        if run is None or run.status != RUNNING:
            continue
        if job.status not in TERMINAL_JOB_STATUSES:
            continue  # retried before this event was drained: its next one closes the run
        run.status = job.status
        run.run_end = job.finished_at or utcnow()
        run.error = job.error or first_errors(session, job.id)
        sync = session.get(SyncJob, run.sync_job_id, with_for_update=True)
        # Read after the job's lock: a tick that moved its last slot on has committed.
        if (
            sync is not None
            and sync.status == SyncJobStatus.SCHEDULED
            and not has_slot(session, sync)
        ):
            sync.status, sync.updated_at = SyncJobStatus.COMPLETED, utcnow()


def has_slot(session: Session, sync: SyncJob) -> bool:
    return periodic.next_slot_at(session, kind=KB_SYNC, owner_id=sync.id) is not None


def first_errors(session: Session, job_id: uuid.UUID) -> str | None:
    """What went wrong in a run's failed batches: the first error, and how many failed."""
    failed = (
        session.execute(
            select(Execution.error)
            .where(Execution.job_id == job_id, Execution.status == ExecutionStatus.FAILED.value)
            .order_by(Execution.seq)
            .limit(1000)
        )
        .scalars()
        .all()
    )
    if not failed:
        return None
    first = failed[0] or "failed"
    return first if len(failed) == 1 else f"{first} (and {len(failed) - 1} more batch(es) failed)"


def reopen_retried_runs(connection: Any, events: Sequence[Event]) -> None:
    """In the transaction of a retry (``job.retried``) of a run's failed batches: its
    history row is running again, until the run ends again (:func:`on_runs_finished`).

    A sync job has one run at a time, and its watermark moves over its runs in order: only
    its latest run is retried, and only while no other run is going (Conflict: the retry
    is rolled back). The sync job's row is locked first, as a run's start locks it."""
    session = connection if isinstance(connection, Session) else Session(bind=connection)
    for event in events:
        if event.payload.get("type") != KB_SYNC or event.job_id is None:
            continue
        run = session.get(SyncRun, event.job_id)
        if run is None:
            continue
        session.get(SyncJob, run.sync_job_id, with_for_update=True)
        latest = session.scalar(
            select(SyncRun.job_id)
            .where(SyncRun.sync_job_id == run.sync_job_id)
            .order_by(SyncRun.run_start.desc(), SyncRun.job_id.desc())
            .limit(1)
        )
        if latest != run.job_id:
            raise Conflict(
                "Only the sync job's latest run can be retried: a later run has read on "
                "from where this one stopped",
                code="NOT_LATEST_RUN",
            )
        session.execute(
            update(SyncRun)
            .where(SyncRun.job_id == run.job_id)
            .values(status=RUNNING, run_end=None, error=None)
            .execution_options(synchronize_session=False)
        )
        session.refresh(run)
