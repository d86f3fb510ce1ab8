"""Dispatch: hand executions to the broker in groups, bounded and fair.

The broker never holds a job's whole fan-out. It holds a few groups per live execution
worker (``JOBYARD_DISPATCH_QUEUE_GROUPS``, never more than the worker's capacity),
unclaimed: enough for each worker to refill its freed capacity at once, whatever the size
of the jobs. What is in flight is bounded by the workers themselves (each holds at most
its ``JOBYARD_WORKER_CAPACITY`` executions, claimed), so claimed executions do not count
here: a worker full of long calls does not starve the broker, and a broker never holds a
worker's whole capacity ahead of a small job when calls are fast. Each time room appears (a
worker claims, a fan-out writes a chunk, the sweep runs), :func:`fill` tops it up one group
at a time, serving the organisation served least recently, then that organisation's job
served least recently: round-robin over organisations, then over their jobs. A small job
submitted beside a 200,000-execution job therefore waits behind a few groups, not the big
job.

What counts as queued: executions handed out (``dispatched_at`` set), not claimed and not
finished, except retries still waiting for their time. Those rows are few, and an index
covers the handed-out ones.

A job type may hand out smaller groups (``JobTypeSpec.group_size``: a sync run's
execution is a batch of a thousand rows, so it goes alone). Each of its executions then
weighs as much as the default group size over its own, so the broker holds about the same
amount of work, and the same wait for a small job behind it, whatever the types.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Integer, Table, and_, bindparam, exists, false, func, or_, select, update

from shared import tracing
from shared.db import connection_scope
from shared.engine import workers
from shared.engine.counters import Executor
from shared.engine.job_types import group_size_for
from shared.engine.locks import lock_dispatch
from shared.messaging import publisher
from shared.messaging.labels import JobGroup, JobLabel
from shared.models import ACTIVE_EXECUTION_STATUSES, ACTIVE_JOB_STATUSES, Execution, Job, utcnow
from shared.settings import get_settings

log = logging.getLogger(__name__)

EXECUTIONS: Table = Execution.__table__  # type: ignore[assignment]
JOBS: Table = Job.__table__  # type: ignore[assignment]


def weight(job_type: str) -> int:
    """How many default executions one execution of ``job_type`` counts as."""
    own = group_size_for(job_type)
    default = get_settings().group_size
    return max(1, default // own) if own else 1


def queued(connection: Executor, now: datetime) -> int:
    """Executions in the broker, not yet claimed (retries waiting their turn apart),
    weighted by their type."""
    rows = connection.execute(_queued_statement(), {"now": now}).all()
    return sum(int(count) * weight(job_type) for job_type, count in rows)


# Dispatch's statements are built once, their values bound at each fill (every finished
# group fills): a statement built per call spent CPU on its cache key every time.
@cache
def _queued_statement() -> Any:
    return (
        select(Job.type, func.count())
        .select_from(EXECUTIONS)
        .join(Job, Job.id == EXECUTIONS.c.job_id)
        .where(
            EXECUTIONS.c.dispatched_at.is_not(None),
            EXECUTIONS.c.status.in_(ACTIVE_EXECUTION_STATUSES),
            EXECUTIONS.c.lease_token.is_(None),
            or_(
                EXECUTIONS.c.next_attempt_at.is_(None),
                EXECUTIONS.c.next_attempt_at <= bindparam("now"),
            ),
        )
        .group_by(Job.type)
    )


def target(connection: Executor, now: datetime) -> int:
    """How many executions the broker should hold unclaimed: a few groups per live worker,
    at most its capacity (one worker's worth while none is registered yet)."""
    settings = get_settings()
    queue = settings.dispatch_queue_groups * settings.group_size
    capacities = workers.live_capacities(connection, now) or [queue]
    return sum(min(capacity, queue) for capacity in capacities)


@dataclass
class _Organisation:
    id: uuid.UUID
    jobs: deque[tuple[uuid.UUID, str]] = field(default_factory=deque)  # (id, type)


def _ready(now: Any) -> Any:
    """Execution rows dispatch may hand out: written, not in the broker, due."""
    return and_(
        Execution.dispatched_at.is_(None),
        Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
        Execution.parked == false(),  # as the ready index's predicate says it
        or_(Execution.next_attempt_at.is_(None), Execution.next_attempt_at <= now),
    )


@cache
def _rotation_statement() -> Any:
    has_ready_work = exists().where(Execution.job_id == Job.id, _ready(bindparam("now")))
    return select(
        Job.id, Job.type, Job.organisation_id, Job.last_dispatched_at, Job.created_at
    ).where(
        Job.status.in_(ACTIVE_JOB_STATUSES),
        Job.parked.is_(False),
        Job.canceled_at.is_(None),
        has_ready_work,
    )


def _rotation(connection: Executor, now: datetime) -> deque[_Organisation]:
    """Unfinished jobs with work ready, grouped by organisation, each in
    least-recently-served order (one query, however many jobs are in flight)."""
    rows = connection.execute(_rotation_statement(), {"now": now}).all()
    never = datetime.min.replace(tzinfo=None)

    def served(stamp: datetime | None) -> Any:
        return stamp.replace(tzinfo=None) if stamp is not None else never

    by_org: dict[uuid.UUID, list[Any]] = {}
    for row in rows:
        by_org.setdefault(row.organisation_id, []).append(row)
    organisations = []
    for organisation_id, jobs in by_org.items():
        jobs.sort(key=lambda r: (served(r.last_dispatched_at), r.created_at))
        last = max(served(r.last_dispatched_at) for r in jobs)
        organisations.append((last, organisation_id, [(r.id, r.type) for r in jobs]))
    organisations.sort(key=lambda o: (o[0], str(o[1])))
    return deque(_Organisation(org_id, deque(job_ids)) for _, org_id, job_ids in organisations)


def _mark_ready_group(
    connection: Executor, job_id: uuid.UUID, size: int, now: datetime
) -> list[Any]:
    """Mark the job's next ``size`` ready executions dispatched and return their ids: one
    statement, where selecting them and then updating them by id sent every id back."""
    return list(
        connection.execute(
            _mark_ready_statement(), {"the_job_id": job_id, "size": size, "now": now}
        ).scalars()
    )


@cache
def _mark_ready_statement() -> Any:
    next_ready = (
        select(EXECUTIONS.c.id)
        .where(EXECUTIONS.c.job_id == bindparam("the_job_id"), _ready(bindparam("now")))
        .order_by(EXECUTIONS.c.seq)
        .limit(bindparam("size", type_=Integer()))
        .scalar_subquery()
    )
    return (
        update(EXECUTIONS)
        .where(EXECUTIONS.c.id.in_(next_ready))
        .values(dispatched_at=bindparam("now"))
        .returning(EXECUTIONS.c.id)
    )


@cache
def _served_statement() -> Any:
    return (
        update(JOBS)
        .where(JOBS.c.id == bindparam("the_job_id"))
        .values(last_dispatched_at=bindparam("stamp"))
    )


def take_groups(connection: Executor, now: datetime, *, wait: bool = True) -> list[JobGroup]:
    """Mark the next groups as dispatched (in the caller's transaction) and return them,
    each with its job's label (the rotation knows it: no query more); without ``wait``,
    none while another transaction is dispatching."""
    if not lock_dispatch(connection, wait=wait):
        return []
    room = target(connection, now) - queued(connection, now)
    if room <= 0:
        return []
    default_size = get_settings().group_size
    rotation = _rotation(connection, now)
    groups: list[JobGroup] = []
    while room > 0 and rotation:
        organisation = rotation.popleft()
        job_id, job_type = organisation.jobs.popleft()
        size = group_size_for(job_type) or default_size
        ids = _mark_ready_group(connection, job_id, size, now)
        if ids:
            stamp = now + timedelta(microseconds=len(groups))  # keeps this round's order
            connection.execute(_served_statement(), {"the_job_id": job_id, "stamp": stamp})
            groups.append(JobGroup(ids, JobLabel(job_id, organisation.id, job_type)))
            room -= len(ids) * weight(job_type)
            organisation.jobs.append((job_id, job_type))  # served: to the back of its organisation
            rotation.append(organisation)  # and the organisation to the back of all
        elif organisation.jobs:
            rotation.appendleft(organisation)  # that job had nothing ready; try its next
    return groups


def fill(*, wait: bool = True) -> int:
    """Top the broker up to the target; returns how many executions were handed out.

    Groups are marked in one transaction and published after it commits; a group that
    cannot be published is unmarked, to be handed out again by a later fill.

    Without ``wait`` it hands out nothing while another fill runs (that one, or the next
    one a finished group calls, tops up): for a caller that only wants work to start
    early and must not queue behind every worker's fill, as a fan-out between chunks.
    """
    now = utcnow()
    with connection_scope() as connection:
        groups = take_groups(connection, now, wait=wait)
        parents = trace_parents(connection, groups) if groups and tracing.enabled() else None
    if not groups:
        return 0
    unpublished = publisher.publish_groups(groups, trace_parents=parents)
    if unpublished:
        ids = [i for group in unpublished for i in group]
        with connection_scope() as connection:
            connection.execute(
                update(EXECUTIONS)
                .where(EXECUTIONS.c.id.in_(ids), EXECUTIONS.c.lease_token.is_(None))
                .values(dispatched_at=None)
            )
    return sum(len(g) for g in groups) - sum(len(g) for g in unpublished)


def trace_parents(connection: Executor, groups: list[JobGroup]) -> list[str | None]:
    """Each group's job's stored trace context (a group is one job's executions), for its
    message to be that trace's (shared.tracing): one query per fill, by the jobs' keys,
    only while tracing is on."""
    job_ids = {group.label.job_id for group in groups}
    rows = connection.execute(
        select(JOBS.c.id, JOBS.c.traceparent).where(JOBS.c.id.in_(job_ids))
    ).all()
    by_job = {job_id: traceparent for job_id, traceparent in rows}
    return [by_job.get(group.label.job_id) for group in groups]
