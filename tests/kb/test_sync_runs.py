"""The guards of a sync run, driven in this process against real PostgreSQL tables: the
plan's boundary, the watermark over batches committed out of order, a batch written twice,
and the schedule's claim of a due slot."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Table, select, update
from sqlalchemy.engine import Engine

from shared.db import session_scope, unit_of_work
from shared.engine import periodic
from shared.kb import sync
from shared.kb.models import SyncJob, SyncRun
from shared.kb.runs import prepare_run, write_batch
from shared.kb.sync import KB_SYNC
from shared.models import Job
from tests.kb_support import (
    SOURCE_URL,
    create_job,
    create_kb,
    insert_orders,
    job_body,
    kb_rows,
    next_run_at,
    private_allowed,  # noqa: F401 - a fixture
    register,
    set_slot,
    source_table,
    sync_job,
)
from tests.support import Tenant


def run_now(organisation_id: uuid.UUID, name: str) -> uuid.UUID:
    """Start a run of the sync job now, in a unit of work of its own (as a request does)."""
    with unit_of_work() as work:
        return sync.run_now(work, organisation_id, name)


T0 = datetime(2026, 11, 1, 12, 0, 0)


@dataclass
class Source:
    engine: Engine
    table: Table
    kb: str
    name: str
    org_id: uuid.UUID


@pytest.fixture
def source(
    client: FlaskClient,
    tenant: Tenant,
    private_allowed: None,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Source]:
    """A sync job over a fresh orders table, in batches of 100 rows."""
    monkeypatch.setenv("JOBYARD_KB_SYNC_BATCH_ROWS", "100")
    from shared.settings import reset_settings_cache

    reset_settings_cache()
    kb = f"kb_{uuid.uuid4().hex[:6]}"
    register(client, tenant, "shop", SOURCE_URL)
    create_kb(client, tenant, kb)
    with source_table() as (engine, table):
        name = create_job(client, tenant, job_body("shop", table.name, kb))["job_name"]
        yield Source(engine, table, kb, name, tenant.org_id)
    monkeypatch.undo()
    reset_settings_cache()


def start_run(source: Source) -> tuple[uuid.UUID, list[dict[str, Any]]]:
    """A run, planned: its Job id and its batches."""
    run_id = run_now(source.org_id, source.name)
    prepare_run(run_id)
    with session_scope() as session:
        job = session.get(Job, run_id)
        assert job is not None
        return run_id, list(job.payload["batches"])


def watermark(source: Source) -> dict[str, Any] | None:
    with session_scope() as session:
        return session.scalar(select(SyncJob.watermark).where(SyncJob.name == source.name))


def close(run_id: uuid.UUID) -> None:
    """End the run's history row, as the job.finished consumer does."""
    with session_scope() as session:
        session.execute(update(SyncRun).where(SyncRun.job_id == run_id).values(status="completed"))


def at(seconds: int) -> dict[str, str]:
    return {"datetime": (T0 + timedelta(seconds=seconds)).isoformat()}


def test_the_watermark_moves_only_over_batches_committed_in_order(source: Source) -> None:
    insert_orders(source.engine, source.table, 250, start=0, at=T0)
    run_id, batches = start_run(source)
    assert [b["rows"] for b in batches] == [100, 100, 50]
    write_batch(run_id, batches[2])
    assert watermark(source) is None  # batches 0 and 1 are not written yet
    write_batch(run_id, batches[0])
    assert watermark(source) == {"value": at(99), "ids": ["99"]}
    write_batch(run_id, batches[1])
    assert watermark(source) == {"value": at(249), "ids": ["249"]}
    assert len(kb_rows(source.kb)) == 250


def test_a_batch_written_again_counts_nothing_twice(source: Source) -> None:
    insert_orders(source.engine, source.table, 150, start=0, at=T0)
    run_id, batches = start_run(source)
    first = write_batch(run_id, batches[0])
    again = write_batch(run_id, batches[0])
    assert first["rows_read"] == again["rows_read"] == 100
    with session_scope() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None and (run.rows_read, run.rows_written) == (100, 100)
    assert len(kb_rows(source.kb)) == 100


def test_the_boundary_is_read_again_and_its_written_rows_left_out(source: Source) -> None:
    insert_orders(source.engine, source.table, 3, start=0, at=T0)
    run_id, batches = start_run(source)
    for batch in batches:
        write_batch(run_id, batch)
    close(run_id)
    assert watermark(source) == {"value": at(2), "ids": ["2"]}
    # Two new rows at the boundary value itself, one after it.
    insert_orders(source.engine, source.table, 2, start=10, at=T0 + timedelta(seconds=2))
    with source.engine.begin() as connection:
        connection.execute(
            update(source.table)
            .where(source.table.c.id == 11)
            .values(created_at=T0 + timedelta(seconds=2))
        )
    insert_orders(source.engine, source.table, 1, start=20, at=T0 + timedelta(seconds=9))
    run_id, batches = start_run(source)
    assert sum(b["rows"] for b in batches) == 3  # rows 10, 11 (at the boundary) and 20
    counts = [write_batch(run_id, b) for b in batches]
    assert sum(c["rows_read"] for c in counts) == 3
    assert set(kb_rows(source.kb)) == {"0", "1", "2", "10", "11", "20"}


def test_rows_without_a_filter_value_are_counted_not_skipped_silently(source: Source) -> None:
    insert_orders(source.engine, source.table, 4, start=0, at=T0)
    with source.engine.begin() as connection:
        connection.execute(
            update(source.table).where(source.table.c.id < 2).values(created_at=None)
        )
    run_id, batches = start_run(source)
    with session_scope() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None and run.rows_without_filter_value == 2
    assert sum(b["rows"] for b in batches) == 2


def tick() -> periodic.KindReport:
    """One engine tick: what it did for sync jobs."""
    return periodic.tick().of(KB_SYNC)


def test_a_slot_that_comes_while_the_run_goes_is_skipped(source: Source) -> None:
    run_now(source.org_id, source.name)
    due = datetime.now(UTC) - timedelta(seconds=1)
    set_slot(source.name, due)
    report = tick()
    assert report.jobs_created == [] and report.slots_claimed == 1  # claimed, not run
    moved = next_run_at(source.name)
    assert moved is not None and moved > due
    with session_scope() as session:
        job = session.scalar(select(SyncJob).where(SyncJob.name == source.name))
        assert job is not None
        assert len(session.scalars(select(SyncRun).where(SyncRun.sync_job_id == job.id)).all()) == 1


def tick_at_once(barrier: threading.Barrier, started: list[int]) -> None:
    barrier.wait()
    started.append(len(tick().jobs_created))


def test_concurrent_ticks_start_a_slot_once(source: Source) -> None:
    """Eight ticks at once over one due slot, five times over: one run per slot."""
    for round_ in range(5):
        with session_scope() as session:
            session.execute(  # none going
                update(SyncRun)
                .where(
                    SyncRun.sync_job_id
                    == select(SyncJob.id).where(SyncJob.name == source.name).scalar_subquery()
                )
                .values(status="completed")
            )
        set_slot(source.name, datetime.now(UTC) - timedelta(minutes=10 - round_))
        barrier = threading.Barrier(8)
        started: list[int] = []
        threads = [threading.Thread(target=tick_at_once, args=(barrier, started)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(started) == 8 and sum(started) == 1, started  # no tick failed, one ran
    with session_scope() as session:
        slots = session.scalars(
            select(SyncRun.slot_at).join(SyncJob).where(SyncJob.name == source.name)
        ).all()
    assert len(slots) == len(set(slots)) == 5


def test_a_due_job_another_tick_holds_is_skipped_not_started_twice(source: Source) -> None:
    """Another beat's tick holds the due slot (its schedule's row lock): this tick neither
    waits for it nor starts the slot; once that tick is gone, the slot starts once."""
    set_slot(source.name, datetime.now(UTC) - timedelta(seconds=1))
    job_id = sync_job(source.name).id
    started: list[int] = []
    with session_scope() as holder:
        periodic.lock_schedule(holder, kind=KB_SYNC, owner_id=job_id)
        ticking = threading.Thread(target=lambda: started.append(len(tick().jobs_created)))
        ticking.start()
        ticking.join(timeout=10)
        assert not ticking.is_alive(), "the tick waited for the other tick's lock"
    assert started == [0]
    assert len(tick().jobs_created) == 1


def test_a_job_past_its_end_completes_when_its_last_run_ends(source: Source) -> None:
    with session_scope() as session:
        session.execute(
            update(SyncJob).where(SyncJob.name == source.name).values(end_time=datetime.now(UTC))
        )
    set_slot(source.name, datetime.now(UTC) - timedelta(seconds=1))
    report = tick()
    assert len(report.jobs_created) == 1
    job = sync_job(source.name)
    assert (job.status, next_run_at(source.name)) == ("scheduled", None)
    close(report.jobs_created[0])
    assert tick().reconciled >= 1
    assert sync_job(source.name).status == "completed"


def test_a_slot_that_has_run_is_not_started_again_and_does_not_block_the_tick(
    source: Source,
) -> None:
    """The next slot set back onto a slot that ran (the unique slot would refuse a second
    run): the tick skips it instead of failing on it every time."""
    slot = datetime.now(UTC) - timedelta(seconds=5)
    set_slot(source.name, slot)
    first = tick()
    assert len(first.jobs_created) == 1
    close(first.jobs_created[0])
    set_slot(source.name, slot)
    again = tick()
    assert again.jobs_created == [] and again.slots_skipped == 1
    moved = next_run_at(source.name)
    assert moved is not None and moved > slot
