"""Periodic slots, driven directly with a kind of the tests' own (``test.periodic``: a
slot every minute, each writing one ``test.items`` job), on both databases: a slot is
claimed once however many ticks race for it, runs once, moves strictly past now, and a
slot that fails stops no other."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.db import UnitOfWork, dialect_name, session_scope
from shared.engine import periodic
from shared.engine.jobs import new_job
from shared.models import Job, PeriodicSchedule, utcnow
from tests.engine.conftest import TEST_TYPE

pytestmark = pytest.mark.every_database

KIND = "test.periodic"
EVERY = timedelta(minutes=1)
FAILING: set[uuid.UUID] = set()  # owners whose slot raises
BAD_NEXT: set[uuid.UUID] = set()  # owners whose next slot is not after now
RECONCILE = {"calls": 0, "fail": False}


def next_slot(_session: Session, owner_id: uuid.UUID, slot: datetime, now: datetime) -> datetime:
    if owner_id in BAD_NEXT:
        return now
    return slot + EVERY * ((now - slot) // EVERY + 1)


def run_slot(work: UnitOfWork, owner_id: uuid.UUID, slot: datetime) -> list[uuid.UUID]:
    if owner_id in FAILING:
        raise RuntimeError(f"owner {owner_id} fails")
    organisation_id = work.session.scalar(
        select(PeriodicSchedule.organisation_id).where(
            PeriodicSchedule.kind == KIND, PeriodicSchedule.owner_id == owner_id
        )
    )
    assert organisation_id is not None
    job = new_job(
        organisation_id=organisation_id,
        job_type=TEST_TYPE,
        total=1,
        payload={"n": 1, "owner": str(owner_id), "slot": slot.isoformat()},
    )
    work.session.add(job)
    work.session.flush()
    return [job.id]


def reconcile(_work: UnitOfWork, _now: datetime) -> int:
    RECONCILE["calls"] += 1
    if RECONCILE["fail"]:
        raise RuntimeError("reconcile fails")
    return 0


periodic.register_periodic_kind(
    periodic.PeriodicKind(KIND, next_slot=next_slot, run_slot=run_slot, reconcile=reconcile)
)


@pytest.fixture(autouse=True)
def clean_kind() -> Iterator[None]:
    """No schedule of the test kind outlives its test (other tests tick too)."""
    yield
    FAILING.clear()
    BAD_NEXT.clear()
    RECONCILE.update(calls=0, fail=False)
    with session_scope() as session:
        session.execute(
            delete(PeriodicSchedule).where(PeriodicSchedule.kind.in_([KIND, "test.unknown"]))
        )


def scheduled(organisation_id: uuid.UUID, at: datetime | None, kind: str = KIND) -> uuid.UUID:
    """A new owner whose next slot is ``at`` (as the database stores it)."""
    owner_id = uuid.uuid4()
    set_slot(organisation_id, owner_id, at, kind)
    return owner_id


def set_slot(
    organisation_id: uuid.UUID, owner_id: uuid.UUID, at: datetime | None, kind: str = KIND
) -> None:
    with session_scope() as session:
        periodic.schedule(
            session, kind=kind, owner_id=owner_id, organisation_id=organisation_id, at=at
        )


def next_of(owner_id: uuid.UUID, kind: str = KIND) -> datetime | None:
    with session_scope() as session:
        return periodic.next_slot_at(session, kind=kind, owner_id=owner_id)


def slots_run(organisation_id: uuid.UUID) -> Counter[tuple[str, str]]:
    """How many jobs each (owner, slot) got."""
    with session_scope() as session:
        payloads = session.scalars(
            select(Job.payload).where(Job.organisation_id == organisation_id)
        ).all()
    return Counter((p["owner"], p["slot"]) for p in payloads)


def whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def test_a_due_slot_runs_once_and_moves_to_the_first_slot_after_now(
    organisation_id: uuid.UUID,
) -> None:
    """Ten and a half minutes late: one run (missed slots are not caught up), and the next
    slot is the first one of the schedule strictly after now."""
    now = whole_seconds(utcnow())
    slot = now - timedelta(minutes=10, seconds=30)
    owner = scheduled(organisation_id, slot)
    report = periodic.tick(now).of(KIND)
    assert (report.slots_claimed, len(report.jobs_created), report.jobs_undispatched) == (1, 1, 0)
    assert slots_run(organisation_id) == {(str(owner), slot.isoformat()): 1}
    assert next_of(owner) == now + timedelta(seconds=30)
    assert periodic.tick(now).of(KIND).slots_claimed == 0
    assert periodic.tick(now + timedelta(seconds=29)).of(KIND).slots_claimed == 0
    assert sum(slots_run(organisation_id).values()) == 1


def test_the_next_slot_is_strictly_after_now(organisation_id: uuid.UUID) -> None:
    """A slot that falls exactly at now is not the next one; a kind that says it is fails
    its slot (running it would catch up) and leaves it due, with nothing written."""
    now = whole_seconds(utcnow())
    owner = scheduled(organisation_id, now - EVERY)
    periodic.tick(now)
    assert next_of(owner) == now + EVERY
    bad = scheduled(organisation_id, now - EVERY)
    BAD_NEXT.add(bad)
    report = periodic.tick(now).of(KIND)
    assert (report.slots_failed, report.jobs_created) == (1, [])
    assert next_of(bad) == now - EVERY
    assert sum(slots_run(organisation_id).values()) == 1


def tick_at_once(
    barrier: threading.Barrier, reports: list[periodic.KindReport], errors: list[BaseException]
) -> None:
    try:
        barrier.wait()
        reports.append(periodic.tick().of(KIND))
    except BaseException as exc:  # pragma: no cover - reported by the test
        errors.append(exc)


def test_racing_ticks_claim_each_slot_once(organisation_id: uuid.UUID) -> None:
    """Eight ticks at once (threads, each its own connection) over three due schedules,
    four rounds: every slot runs exactly once and no tick fails."""
    owners = [scheduled(organisation_id, None) for _ in range(3)]
    expected: Counter[tuple[str, str]] = Counter()
    for round_ in range(4):
        slot = whole_seconds(utcnow()) - timedelta(minutes=10 - round_)
        for owner in owners:
            set_slot(organisation_id, owner, slot)
            expected[(str(owner), slot.isoformat())] = 1
        barrier = threading.Barrier(8)
        reports: list[periodic.KindReport] = []
        errors: list[BaseException] = []
        tick = partial(tick_at_once, barrier, reports, errors)
        threads = [threading.Thread(target=tick) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert sum(r.slots_claimed for r in reports) == 3
        assert sum(r.slots_failed for r in reports) == 0
    assert slots_run(organisation_id) == expected


def test_a_failing_slot_stops_no_other_and_stays_due(organisation_id: uuid.UUID) -> None:
    """Its unit of work rolls back alone; the next tick tries it again."""
    now = whole_seconds(utcnow())
    slot = now - timedelta(seconds=10)
    failing, first, second = (scheduled(organisation_id, slot) for _ in range(3))
    FAILING.add(failing)
    report = periodic.tick(now).of(KIND)
    assert (report.slots_failed, report.slots_claimed, len(report.jobs_created)) == (1, 2, 2)
    assert slots_run(organisation_id) == {
        (str(first), slot.isoformat()): 1,
        (str(second), slot.isoformat()): 1,
    }
    assert next_of(failing) == slot
    assert next_of(first) == next_of(second) == slot + EVERY
    FAILING.clear()
    assert periodic.tick(now).of(KIND).slots_claimed == 1
    assert slots_run(organisation_id)[(str(failing), slot.isoformat())] == 1


def test_a_slot_that_has_run_never_runs_again(organisation_id: uuid.UUID) -> None:
    """The schedule set back onto a slot that ran, or before it: the tick moves it on
    without running it."""
    now = whole_seconds(utcnow())
    slot = now - timedelta(seconds=10)
    owner = scheduled(organisation_id, slot)
    periodic.tick(now)
    for back in (slot, slot - EVERY):
        set_slot(organisation_id, owner, back)
        report = periodic.tick(now).of(KIND)
        assert (report.slots_skipped, report.slots_claimed, report.jobs_created) == (1, 0, [])
        assert next_of(owner) == slot + EVERY
    assert slots_run(organisation_id) == {(str(owner), slot.isoformat()): 1}


def test_a_slot_another_tick_holds_is_passed_by_without_waiting(
    organisation_id: uuid.UUID,
) -> None:
    owner = scheduled(organisation_id, utcnow() - timedelta(seconds=1))
    reports: list[periodic.KindReport] = []
    with session_scope() as holder:
        if dialect_name(holder) != "postgresql":
            pytest.skip("SQLite's transactions take turns: a tick never finds a slot held")
        periodic.lock_schedule(holder, kind=KIND, owner_id=owner)
        ticking = threading.Thread(target=lambda: reports.append(periodic.tick().of(KIND)))
        ticking.start()
        ticking.join(timeout=10)
        assert not ticking.is_alive(), "the tick waited for the other tick's lock"
    assert reports[0].slots_claimed == 0
    assert periodic.tick().of(KIND).slots_claimed == 1


def test_idle_schedules_and_unknown_kinds_are_not_claimed(organisation_id: uuid.UUID) -> None:
    idle = scheduled(organisation_id, None)
    unknown = scheduled(organisation_id, utcnow() - timedelta(minutes=1), kind="test.unknown")
    due_before = next_of(unknown, kind="test.unknown")
    report = periodic.tick()
    assert "test.unknown" not in report.kinds
    assert next_of(idle) is None
    assert next_of(unknown, kind="test.unknown") == due_before
    assert slots_run(organisation_id) == {}


def test_a_failing_reconcile_stops_no_slot(organisation_id: uuid.UUID) -> None:
    """A kind's reconcile runs once per tick, before the claims, in its own transaction."""
    RECONCILE["fail"] = True
    owner = scheduled(organisation_id, utcnow() - timedelta(seconds=1))
    report = periodic.tick().of(KIND)
    assert RECONCILE["calls"] == 1
    assert report.slots_claimed == 1
    assert len(slots_run(organisation_id)) == 1 and next_of(owner) is not None
