"""Periodic slots: recurring work as an engine feature (River's ``PeriodicJob`` is the
model). The engine owns *when* the next slot falls and *who* claims it; a domain owns
*what* a slot does.

A domain registers a :class:`PeriodicKind` (its slot arithmetic and its slot's work) and
keeps one :class:`~shared.models.PeriodicSchedule` row per owner (its own row whose
schedule it is) with :func:`schedule`. Beat publishes ``schedules.tick`` every few seconds; :func:`tick`
claims every due slot of a registered kind, each in a unit of work of its own:

- **Claim.** The schedule row is taken ``FOR UPDATE SKIP LOCKED`` while still due, so of
  two beats (or two ticks in flight) one claims the slot and the other passes it by
  without waiting; on SQLite every transaction holds the write lock from its start
  (``BEGIN IMMEDIATE``, :mod:`shared.sqlite`), so the second sees the slot moved on.
- **Once per slot.** The row keeps the last slot that ran: a slot at or before it (a
  schedule set back) moves on without running again.
- **Advance.** The next slot is the kind's, and strictly after now: missed slots are not
  caught up.
- **Run.** The slot's work writes its Jobs in the same transaction (a slot is run and
  advanced, or neither), and they are dispatched once it has committed. A slot whose work
  raises is rolled back alone and stays due: the next tick tries it again, and the other
  slots go on.

Lock order: a claim holds the schedule row while the kind's work locks the owner's rows,
so code that changes an owner's schedule locks the schedule first (:func:`lock_schedule`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db import UnitOfWork, dialect_name, session_scope, unit_of_work
from shared.engine import job_types
from shared.engine.job_types import PeriodicKind
from shared.engine.jobs import dispatch_after_commit
from shared.models import PeriodicSchedule, utcnow
from shared.sqlite import reads_only

log = logging.getLogger(__name__)

CLAIM_BATCH = 100

# Kinds registered outside any job type's spec (a test's); a job type declares its own in
# its spec (JobTypeSpec.periodic).
_extra_kinds: dict[str, PeriodicKind] = {}


def register_periodic_kind(kind: PeriodicKind) -> None:
    """Register a kind that belongs to no job type (a test's)."""
    _extra_kinds[kind.name] = kind


def kinds() -> dict[str, PeriodicKind]:
    """Every installed job type's periodic kind, and those registered outside one."""
    found = {spec.periodic.name: spec.periodic for spec in job_types.installed() if spec.periodic}
    return {**found, **_extra_kinds}


# ---------------------------------------------------------------------------------------
# An owner's schedule, as its domain sets and reads it.


def schedule(
    session: Session,
    *,
    kind: str,
    owner_id: uuid.UUID,
    organisation_id: uuid.UUID,
    at: datetime | None,
) -> None:
    """Set the owner's next slot; None: nothing due until set again (a row is written
    only for a slot, or kept idle with the last slot it ran)."""
    now = utcnow()
    if at is None:
        session.execute(
            update(PeriodicSchedule)
            .where(PeriodicSchedule.kind == kind, PeriodicSchedule.owner_id == owner_id)
            .values(next_slot_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return
    insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    statement = insert(PeriodicSchedule).values(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        kind=kind,
        owner_id=owner_id,
        next_slot_at=at,
        created_at=now,
        updated_at=now,
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["kind", "owner_id"],
            set_={"next_slot_at": at, "updated_at": now},
        )
    )


def drop_schedule(session: Session, *, kind: str, owner_id: uuid.UUID) -> None:
    """Forget the owner's schedule (the owner is being deleted)."""
    session.execute(
        delete(PeriodicSchedule).where(
            PeriodicSchedule.kind == kind, PeriodicSchedule.owner_id == owner_id
        )
    )


def lock_schedule(session: Session, *, kind: str, owner_id: uuid.UUID) -> None:
    """Hold the owner's schedule row for the rest of the transaction (waiting for a tick
    running its slot), before locking the owner: the claim's lock order."""
    session.execute(
        select(PeriodicSchedule.id)
        .where(PeriodicSchedule.kind == kind, PeriodicSchedule.owner_id == owner_id)
        .with_for_update()
    )


def next_slot_at(session: Session, *, kind: str, owner_id: uuid.UUID) -> datetime | None:
    """The owner's next slot, or None when none is due."""
    return session.scalar(
        select(PeriodicSchedule.next_slot_at).where(
            PeriodicSchedule.kind == kind, PeriodicSchedule.owner_id == owner_id
        )
    )


# ---------------------------------------------------------------------------------------
# The tick.


@dataclass
class KindReport:
    """What one tick did for one kind."""

    slots_claimed: int = 0  # claimed, advanced and run
    slots_skipped: int = 0  # claimed and advanced, not run: the slot had run already
    slots_failed: int = 0  # rolled back: still due
    reconciled: int = 0
    jobs_created: list[uuid.UUID] = field(default_factory=list)
    jobs_undispatched: int = 0


@dataclass
class TickReport:
    """What one tick did, by kind."""

    kinds: dict[str, KindReport] = field(default_factory=dict)

    def of(self, kind: str) -> KindReport:
        return self.kinds.setdefault(kind, KindReport())

    def summary(self) -> dict[str, int]:
        """The totals over every kind (for the task's log line and result)."""
        reports = self.kinds.values()
        return {
            "slots_claimed": sum(r.slots_claimed for r in reports),
            "slots_skipped": sum(r.slots_skipped for r in reports),
            "slots_failed": sum(r.slots_failed for r in reports),
            "reconciled": sum(r.reconciled for r in reports),
            "jobs_created": sum(len(r.jobs_created) for r in reports),
            "jobs_undispatched": sum(r.jobs_undispatched for r in reports),
        }


class SlotInThePast(ValueError):
    """A kind gave a next slot at or before now: running it would catch up missed slots."""


def tick(now: datetime | None = None) -> TickReport:
    """Reconcile each registered kind, then claim and run every due slot, one unit of work
    per slot (see the module docstring)."""
    now = now or utcnow()
    report = TickReport()
    known = kinds()
    for kind in known.values():
        if kind.reconcile is not None:
            _reconcile(kind, now, report.of(kind.name))
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        due = _due(known, now, after)
        for schedule_id, kind_name, at in due:
            _claim_and_run(known[kind_name], schedule_id, now, report.of(kind_name))
            after = (at, schedule_id)
        if len(due) < CLAIM_BATCH:
            return report


def _reconcile(kind: PeriodicKind, now: datetime, report: KindReport) -> None:
    assert kind.reconcile is not None
    try:
        with unit_of_work() as work:
            report.reconciled += kind.reconcile(work, now)
    except Exception:
        # One kind's bookkeeping failing must not stop every kind's slots.
        log.exception("periodic kind %s: reconcile failed", kind.name)


def _due(
    known: dict[str, PeriodicKind], now: datetime, after: tuple[datetime, uuid.UUID] | None
) -> list[tuple[uuid.UUID, str, datetime]]:
    """The next batch of due schedules of the kinds this process knows, in slot order,
    after ``after`` (so a slot left due by a failure is not taken twice in one tick)."""
    stmt = (
        select(PeriodicSchedule.id, PeriodicSchedule.kind, PeriodicSchedule.next_slot_at)
        .where(
            PeriodicSchedule.kind.in_(list(known)),
            PeriodicSchedule.next_slot_at <= now,
        )
        .order_by(PeriodicSchedule.next_slot_at, PeriodicSchedule.id)
        .limit(CLAIM_BATCH)
    )
    if after is not None:
        at, schedule_id = after
        stmt = stmt.where(
            (PeriodicSchedule.next_slot_at > at)
            | ((PeriodicSchedule.next_slot_at == at) & (PeriodicSchedule.id > schedule_id))
        )
    with reads_only(), session_scope() as session:
        return [(id_, kind, at) for id_, kind, at in session.execute(stmt) if at is not None]


# What a claim found: the slot held or moved on by another tick, the slot had run
# already, or the slot claimed and run.
HELD, RAN_BEFORE, RAN = "held", "ran before", "ran"


def _claim_and_run(
    kind: PeriodicKind, schedule_id: uuid.UUID, now: datetime, report: KindReport
) -> None:
    try:
        with unit_of_work() as work:
            outcome, job_ids = _claim(work, kind, schedule_id, now)
            if job_ids:
                dispatch_after_commit(
                    work, job_ids, partial(_count_unpublished, report, len(job_ids))
                )
    except Exception:
        # Rolled back alone: the slot stays due and the next tick tries it again.
        report.slots_failed += 1
        log.exception("periodic %s schedule %s: the slot failed", kind.name, schedule_id)
        return
    if outcome == RAN:
        report.slots_claimed += 1
        report.jobs_created += job_ids
    elif outcome == RAN_BEFORE:
        report.slots_skipped += 1


def _claim(
    work: UnitOfWork, kind: PeriodicKind, schedule_id: uuid.UUID, now: datetime
) -> tuple[str, list[uuid.UUID]]:
    """Claim the schedule's due slot, advance it, and run it: what it found, and the Jobs
    the slot wrote."""
    row = work.session.scalars(
        select(PeriodicSchedule)
        .where(PeriodicSchedule.id == schedule_id, PeriodicSchedule.next_slot_at <= now)
        .with_for_update(skip_locked=True)
    ).one_or_none()
    if row is None or row.next_slot_at is None:
        return HELD, []
    slot = row.next_slot_at
    following = kind.next_slot(work.session, row.owner_id, slot, now)
    if following is not None and following <= now:
        raise SlotInThePast(f"{kind.name}: next slot {following.isoformat()} is not after now")
    row.next_slot_at = following
    if row.last_slot_at is not None and slot <= row.last_slot_at:
        log.warning("periodic %s owner %s: slot %s has run; skipped", kind.name, row.owner_id, slot)
        return RAN_BEFORE, []
    row.last_slot_at = slot
    return RAN, kind.run_slot(work, row.owner_id, slot)


def _count_unpublished(report: KindReport, created: int, published: int) -> None:
    report.jobs_undispatched += created - published
