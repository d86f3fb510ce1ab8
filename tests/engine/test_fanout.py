"""Fan-out: idempotent when repeated or concurrent, ordered, and stopped by a cancel."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text

from shared.db import dialect_name, get_engine, session_scope
from shared.engine.cancel import cancel_executions
from shared.engine.fanout import (
    execution_id_for,
    execution_id_hexes,
    fan_out_at_accept,
    fan_out_job,
    write_chunk,
)
from shared.engine.job_types import JobTypeSpec, PlannedItem, register
from shared.engine.jobs import new_job
from shared.engine.outcomes import Outcome
from shared.models import Execution, Job
from shared.settings import reset_settings_cache
from tests.engine.conftest import (
    TEST_TYPE,
    claim,
    dispatch_lock_held,
    dispatched,
    execution_ids,
    finish,
    make_job,
    outbox_rows,
    plan_items,
)
from tests.support import assert_counters_exact, job_row, remove_all_jobs

pytestmark = pytest.mark.every_database


def row_count(job_id: uuid.UUID) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).where(Execution.job_id == job_id)) or 0


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Fan-outs write chunks of 10 rows."""
    monkeypatch.setenv("JOBYARD_FANOUT_CHUNK_SIZE", "10")
    reset_settings_cache()
    yield 10
    monkeypatch.undo()
    reset_settings_cache()


def test_fan_out_writes_every_item_in_plan_order(
    organisation_id: uuid.UUID, small_chunks: int
) -> None:
    job_id = make_job(organisation_id, 35)
    assert fan_out_job(job_id) == 35
    with session_scope() as session:
        rows = session.execute(
            select(Execution.seq, Execution.item).where(Execution.job_id == job_id)
        ).all()
    assert sorted(seq for seq, _ in rows) == list(range(35))
    assert all(item["index"] == seq for seq, item in rows)
    job = assert_counters_exact(job_id)
    assert job.status == "processing" and job.fanned_out_at is not None


def test_a_fan_out_run_twice_writes_nothing_twice(
    organisation_id: uuid.UUID, small_chunks: int
) -> None:
    """A re-run after a crash (the job not yet marked fanned out) skips existing rows:
    no duplicate-key error, no second row."""
    job_id = make_job(organisation_id, 25)
    assert fan_out_job(job_id) == 25
    with session_scope() as session:
        session.get(Job, job_id).fanned_out_at = None  # type: ignore[union-attr]
    assert fan_out_job(job_id) == 0
    assert row_count(job_id) == 25
    assert_counters_exact(job_id)


def test_two_fan_outs_at_once_write_each_row_once(
    organisation_id: uuid.UUID, small_chunks: int
) -> None:
    job_id = make_job(organisation_id, 200)
    errors: list[BaseException] = []
    written: list[int] = []

    def run() -> None:
        try:
            written.append(fan_out_job(job_id))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(written) == 200 and row_count(job_id) == 200
    assert_counters_exact(job_id)


# A planner that stops after its first chunk until the test lets it go on.
GATES: dict[str, threading.Event] = {}


def plan_gated(_session: Any, job: Job) -> Iterator[PlannedItem]:
    for index in range(int(job.payload["n"])):
        if index == int(job.payload["gate_at"]):
            GATES[str(job.id)].wait(30)
        yield PlannedItem(key=f"item-{index}", item={"index": index})


register(JobTypeSpec(name="test.gated", planner=plan_gated))


def test_cancel_during_fan_out_stops_it_at_once(
    organisation_id: uuid.UUID, small_chunks: int
) -> None:
    """Canceled after the first chunk: not one row more, and the counters count rows."""
    with session_scope() as session:
        job = new_job(
            organisation_id=organisation_id,
            job_type="test.gated",
            total=100,
            payload={"n": 100, "gate_at": 15},
        )
        session.add(job)
        session.flush()
        job_id = job.id
    GATES[str(job_id)] = threading.Event()
    written: list[int] = []
    fan_out = threading.Thread(target=lambda: written.append(fan_out_job(job_id)))
    fan_out.start()
    while row_count(job_id) < 10:  # the first chunk is in; the planner waits in the second
        threading.Event().wait(0.01)
    with session_scope() as session:
        cancel_executions(session, job_id)
    GATES[str(job_id)].set()
    fan_out.join(30)
    assert written == [10]
    assert row_count(job_id) == 10
    job = assert_counters_exact(job_id)
    assert (job.status, job.total, job.failed, job.pending) == ("canceled", 10, 10, 0)
    assert job.fanned_out_at is not None  # the fan-out is over: the sweep leaves it alone
    assert outbox_rows(job_id) >= 1  # the cancel wrote the job.finished event
    assert fan_out_job(job_id) == 0 and row_count(job_id) == 10


def test_cancel_keeps_what_finished_and_fails_the_rest(organisation_id: uuid.UUID) -> None:
    job_id = make_job(organisation_id, 4)
    fan_out_job(job_id)
    first, *rest = claim(execution_ids(job_id))
    finish([(first, Outcome.succeeded({"ok": True}))])
    with session_scope() as session:
        cancel_executions(session, job_id)
    late = finish([(rest[0], Outcome.succeeded({"late": True}))])  # in flight at the cancel
    assert late.finished[0].status is None
    job = assert_counters_exact(job_id)
    assert (job.status, job.success, job.failed, job.total) == ("canceled", 1, 3, 4)
    assert job_row(job_id).canceled_at is not None


def test_a_cancel_waits_for_a_chunk_being_written(organisation_id: uuid.UUID) -> None:
    """The job lock: a chunk in the middle of its transaction when the cancel comes is
    canceled with the rest once it commits, never left pending on a canceled job."""
    job_id = make_job(organisation_id, 5)
    items = [PlannedItem(key=f"item-{i}", item={"index": i}) for i in range(5)]
    done = threading.Event()

    def cancel() -> None:
        with session_scope() as session:
            cancel_executions(session, job_id)
        done.set()

    with get_engine().connect() as connection:
        transaction = connection.begin()
        assert write_chunk(connection, job_id, 0, items) == 5
        canceler = threading.Thread(target=cancel)
        canceler.start()
        assert not done.wait(0.5)  # it waits for the chunk's transaction
        transaction.commit()
    canceler.join(10)
    assert done.is_set()
    job = assert_counters_exact(job_id)
    assert (job.status, job.total, job.failed, job.pending) == ("canceled", 5, 5, 0)


def accept(organisation_id: uuid.UUID, n: int) -> tuple[uuid.UUID, int]:
    """Accept a ``test.items`` job of ``n`` items, its executions written with it."""
    with session_scope() as session:
        job = new_job(
            organisation_id=organisation_id, job_type=TEST_TYPE, total=n, payload={"n": n}
        )
        session.add(job)
        session.flush()
        written = fan_out_at_accept(session.connection(), job.id, plan_items(session, job))
        return job.id, written


def test_a_job_fanned_out_at_accept_is_dispatched_by_its_fan_out_message(
    organisation_id: uuid.UUID,
) -> None:
    """Its executions exist once the accepting transaction commits; the fan-out message
    that follows writes nothing and starts dispatching them (nothing else would until
    the next sweep)."""
    with session_scope() as session:
        remove_all_jobs(session)  # nothing else outstanding: the broker has room
    job_id, written = accept(organisation_id, 5)
    assert written == 5 and row_count(job_id) == 5
    assert job_row(job_id).fanned_out_at is not None
    assert_counters_exact(job_id)
    assert dispatched(job_id) == 0
    assert fan_out_job(job_id) == 0
    assert dispatched(job_id) == 5


def test_accept_writes_at_most_its_bound_and_the_fan_out_the_rest(
    organisation_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBYARD_EXECUTIONS_WRITTEN_AT_ACCEPT", "3")
    reset_settings_cache()
    try:
        job_id, written = accept(organisation_id, 8)
        assert written == 3 and row_count(job_id) == 3
        assert job_row(job_id).fanned_out_at is None
        assert fan_out_job(job_id) == 5
        with session_scope() as session:
            rows = session.execute(
                select(Execution.seq, Execution.item_key).where(Execution.job_id == job_id)
            ).all()
        assert sorted(rows) == [(i, f"item-{i}") for i in range(8)]
        assert_counters_exact(job_id)
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_execution_ids_are_uuid5_of_the_job_and_the_item_key() -> None:
    """What a job type reads back by key (a batch's data point) is the row COPY wrote."""
    job_id = uuid.uuid4()
    keys = ["0", "item-7", f"{uuid.uuid4()}:gpt-4.1-mini:3", "entrée ☕"]
    assert execution_id_hexes(job_id, keys) == [execution_id_for(job_id, k).hex for k in keys]


def test_a_chunk_leaves_nothing_staged_after_it_commits(organisation_id: uuid.UUID) -> None:
    """The staging table lives as long as its pooled connection: rows left in it would be
    written again by the next chunk, under whatever job that is."""
    job_id = make_job(organisation_id, 5)
    items = [PlannedItem(key=f"item-{i}", item={"index": i}) for i in range(5)]
    with get_engine().connect() as connection:
        if dialect_name(connection) != "postgresql":
            pytest.skip("SQLite inserts the rows directly")
        with connection.begin():
            assert write_chunk(connection, job_id, 0, items) == 5
        assert connection.execute(text("SELECT count(*) FROM fanout_staging")).scalar() == 0
        connection.rollback()


def test_the_fan_out_waits_its_turn_to_dispatch_once_its_last_chunk_is_in(
    organisation_id: uuid.UUID, small_chunks: int
) -> None:
    """Between chunks a fan-out does not queue behind the fills under way; after its last
    one it does, or a job written while workers were filling would sit undispatched until
    the next sweep."""
    with session_scope() as session:
        remove_all_jobs(session)  # nothing else outstanding: the broker has room
    job_id = make_job(organisation_id, 35)
    fan_out = threading.Thread(target=fan_out_job, args=(job_id,))
    with dispatch_lock_held():
        fan_out.start()
        deadline = time.monotonic() + 30
        while fan_out.is_alive() and not waiting_for_a_lock() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert dispatched(job_id) == 0  # every chunk's fill gave way to the one under way
    fan_out.join(30)
    assert row_count(job_id) == 35 and dispatched(job_id) > 0


def waiting_for_a_lock() -> bool:
    """A backend of this database is waiting for an advisory lock."""
    with session_scope() as session:
        return bool(
            session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                )
            )
        )
