"""Job types: each is one :class:`JobTypeSpec`, discovered, not listed.

A job type is a package that says, in one object, everything the engine and the API need
to run it: its planner (what its executions are), preparer (what must be fetched first),
executor (how a group of executions is done), outbox consumers, periodic schedule, the
payload its create takes and the kind of result it produces. The engine looks a job's spec
up by ``Job.type``; nothing in jobyard lists the types.

Specs are found through the Python entry point group ``jobyard.job_types``
(:data:`ENTRY_POINT_GROUP`): an installed distribution that declares

    [project.entry-points."jobyard.job_types"]
    thumbnails = "thumbnails_job_type:SPEC"

adds the ``thumbnails`` type to every jobyard process after a restart, with no edit in
jobyard (``examples/`` holds such a package). jobyard's own types are declared the same way in its ``pyproject.toml``. Tests and
benchmarks may also :func:`register` a spec in their own process (River's
``AddWorker``).

Where a spec's part lives in a process that the spec's package must not import (jobyard's
own executors are the worker's, its payload schemas the API's), the spec names it as
``"module:attribute"`` — what an entry point itself is — and the process that needs it
loads it on first use (:func:`load_reference`). An outside package simply passes the
objects.

Planners run in the fan-out (sync, with a Session); executors run in the worker's event
loop and report one :class:`~shared.engine.outcomes.Outcome` per claimed execution.
"""

from __future__ import annotations

import importlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from sqlalchemy.orm import Session

from shared.engine import outbox
from shared.engine.outbox import Consumer, Event

if TYPE_CHECKING:
    from marshmallow import Schema

    from shared.db import UnitOfWork
    from shared.engine.claim import Claim
    from shared.engine.outcomes import Outcome
    from shared.models import Job

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "jobyard.job_types"


class PlannedItem(NamedTuple):
    """One execution-to-be: a key unique within its job, and the work as JSON data.
    A ``parked`` one is written but not handed out until it is queued.

    (A named tuple: a planner makes one per execution, 100,000 in a big fan-out, and a
    frozen dataclass took twice as long to build.)"""

    key: str
    item: dict[str, Any]
    parked: bool = False


Planner = Callable[[Session, "Job"], Iterable[PlannedItem]]
# Runs before a job's fan-out, once per job, for types whose items must be fetched first
# (a batch's input file): it may set the job's total, or raise PlanFailed.
Preparer = Callable[[uuid.UUID], None]
# The generic create (``POST /v1/jobs``): (the request's unit of work, the caller, the
# loaded payload) -> the new Job, written in that unit of work (its dispatch registered to
# run after the commit).
Create = Callable[["UnitOfWork", Any, dict[str, Any]], "Job"]


class PlanFailed(Exception):
    """The job cannot be planned (its inputs cannot be had): it fails with this reason."""


Report = Callable[["Claim", "Outcome"], None]


class Executor(Protocol):
    """Does the work of a group of claimed executions of one job type.

    It calls ``report(claim, outcome)`` once per claim as each one ends (early reports are
    flushed while the rest still run). A claim left without a report is counted as an
    internal error and retried; an exception fails the unreported claims the same way.
    """

    async def execute(self, claims: Sequence[Claim], report: Report) -> None: ...


@dataclass(frozen=True)
class InTransactionHandler:
    """Called in the very transaction that emits ``topic``, with its Session or
    Connection (see :func:`shared.engine.outbox.register_in_transaction`)."""

    name: str
    topic: str
    handle: Callable[[Any, Sequence[Event]], None]


@dataclass(frozen=True)
class JobTypeSpec:
    """Everything about one job type (see the module docstring).

    Only ``name`` and ``planner`` are required: a type without an ``executor`` can be
    fanned out but not run (an engine test's), one without ``payload_schema`` and
    ``create`` is not created through ``POST /v1/jobs``.
    """

    name: str
    planner: Planner
    # An Executor, or "module:attribute" naming one (loaded by the worker on first use).
    executor: Executor | str | None = None
    preparer: Preparer | None = None
    # Types whose executions are each a big piece of work (a batch of 1,000 source rows)
    # are handed out in smaller groups than the default; see dispatch's weighting.
    group_size: int | None = None
    # ``job.finished`` consumers, drained from the outbox after the commit.
    consumers: tuple[Consumer, ...] = ()
    # Handlers run in the transaction that ends a job or an execution.
    in_transaction: tuple[InTransactionHandler, ...] = ()
    # Whether each execution that ends writes ``execution.finished`` (only the types that
    # ask pay for the extra statement on the finish path).
    reports_executions: bool = False
    # What ``POST /v1/jobs`` takes as this type's payload: a marshmallow Schema class, or
    # "module:attribute" naming one (loaded by the API).
    payload_schema: type[Schema] | str | None = None
    create: Create | None = None
    # Its recurring work on the engine's periodic slots (a project's recurrence, a sync
    # job's interval), if any.
    periodic: PeriodicKind | None = None
    # What the type's executions produce, as the generic jobs list's ``resultType`` names it.
    result_type: str = "items"
    # What each of its jobs belongs to (the type's own owner record, such as a project),
    # read from the type's own tables, for answers that show it; None: its jobs have none.
    owners: Owners | None = None
    description: str = ""
    # The key of an execution's ``item`` that the dashboard breaks a job's executions
    # down by (a run's ``model``, a batch's ``input``), if any.
    breakdown_key: str | None = None

    @property
    def creatable(self) -> bool:
        return self.payload_schema is not None and self.create is not None


# (session, ids of jobs of the type) -> each one's owner id (a job without one is absent).
Owners = Callable[[Session, Sequence[uuid.UUID]], Mapping[uuid.UUID, uuid.UUID]]
# (session, owner id, the slot being claimed, now) -> the owner's next slot, strictly
# after now, or None when it has no slot left.
NextSlot = Callable[[Session, uuid.UUID, datetime, datetime], datetime | None]
# (the slot's unit of work, owner id, slot) -> the ids of the Jobs it wrote.
RunSlot = Callable[["UnitOfWork", uuid.UUID, datetime], list[uuid.UUID]]
# (its own unit of work, now) -> how many owners it changed.
Reconcile = Callable[["UnitOfWork", datetime], int]


@dataclass(frozen=True)
class PeriodicKind:
    """A kind of recurring work a job type runs on the engine's periodic slots
    (:mod:`shared.engine.periodic`): how its owners' slots fall and what a slot does.

    ``reconcile``, when given, runs once per tick before the claims, for what the kind
    keeps in line with its owners besides their slots (schedule owners that have none
    yet, finish owners that have no slot left)."""

    name: str
    next_slot: NextSlot
    run_slot: RunSlot
    reconcile: Reconcile | None = None


class UnknownJobType(LookupError):
    """No spec (or no executor) is known for a job type in this process."""


class BrokenJobType(RuntimeError):
    """An installed job type's entry point cannot be loaded, or is not a JobTypeSpec."""


_specs: dict[str, JobTypeSpec] = {}
_loaded: dict[str, Any] = {}  # "module:attribute" -> the object, loaded once
_lock = threading.RLock()
_discovered = {"done": False}


def load_reference(reference: str) -> Any:
    """The object a ``"module:attribute"`` reference names (imported once)."""
    with _lock:
        if reference not in _loaded:
            module_name, _, attribute = reference.partition(":")
            target: Any = importlib.import_module(module_name)
            for part in attribute.split(".") if attribute else ():
                target = getattr(target, part)
            _loaded[reference] = target
        return _loaded[reference]


def register(spec: JobTypeSpec) -> None:
    """Make ``spec`` known in this process (replacing one of the same name) and hand its
    consumers and in-transaction handlers to the outbox."""
    if not isinstance(spec, JobTypeSpec):
        raise BrokenJobType(f"{spec!r} is not a JobTypeSpec")
    with _lock:
        _specs[spec.name] = spec
    for consumer in spec.consumers:
        outbox.register_consumer(
            consumer.name, consumer.topic, consumer.handle, batch_size=consumer.batch_size
        )
    for handler in spec.in_transaction:
        outbox.register_in_transaction(handler.name, handler.topic, handler.handle)
    if spec.reports_executions:
        outbox.report_executions_of(spec.name)


def discover() -> list[JobTypeSpec]:
    """Load every installed job type (the ``jobyard.job_types`` entry points) once.

    Every process calls it when it starts, so that a job type that cannot be loaded stops
    the start with its name and cause instead of failing jobs later."""
    with _lock:
        if not _discovered["done"]:
            for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
                try:
                    spec = point.load()
                except Exception as error:
                    raise BrokenJobType(
                        f"job type {point.name!r} ({point.value}) cannot be loaded: {error}"
                    ) from error
                if not isinstance(spec, JobTypeSpec) or spec.name != point.name:
                    raise BrokenJobType(
                        f"entry point {point.name!r} ({point.value}) must name a JobTypeSpec "
                        f"whose name is {point.name!r}"
                    )
                register(spec)
            _discovered["done"] = True
        return list(_specs.values())


def spec_for(job_type: str) -> JobTypeSpec:
    discover()
    try:
        return _specs[job_type]
    except KeyError:
        raise UnknownJobType(f"no job type {job_type!r} is installed in this process") from None


def attach_owners(session: Session, jobs: Iterable[Job]) -> None:
    """Set each job's ``owner_id`` (see :attr:`JobTypeSpec.owners`; None when its type has
    none), for the answers that show it: one read per job type among them, whatever
    their number."""
    discover()
    by_type: dict[str, list[Job]] = {}
    for job in jobs:
        by_type.setdefault(job.type, []).append(job)
    for job_type, of_type in by_type.items():
        spec = _specs.get(job_type)
        owners = spec.owners(session, [j.id for j in of_type]) if spec and spec.owners else {}
        for job in of_type:
            # Not a column of the engine's: an attribute of this object, for its answer.
            job.owner_id = owners.get(job.id)  # type: ignore[attr-defined]


def installed() -> list[JobTypeSpec]:
    """Every job type known in this process, by name."""
    return sorted(discover(), key=lambda spec: spec.name)


def group_size_for(job_type: str) -> int | None:
    """The type's own group size, or None for the default (``JOBYARD_GROUP_SIZE``)."""
    return spec_for(job_type).group_size


def preparer_for(job_type: str) -> Preparer | None:
    return spec_for(job_type).preparer


def planner_for(job_type: str) -> Planner:
    return spec_for(job_type).planner


def executor_for(job_type: str) -> Executor:
    executor = spec_for(job_type).executor
    if executor is None:
        raise UnknownJobType(f"job type {job_type!r} has no executor")
    if isinstance(executor, str):
        loaded: Executor = load_reference(executor)
        return loaded
    return executor


def load_executors() -> None:
    """Load every installed type's executor (the worker calls it when it starts, so that a
    missing executor module stops the start instead of failing that type's jobs)."""
    for spec in installed():
        if spec.executor is not None:
            executor_for(spec.name)


def payload_schema_for(spec: JobTypeSpec) -> type[Schema] | None:
    """The spec's payload schema class (loaded, when it is named by reference)."""
    schema = spec.payload_schema
    if isinstance(schema, str):
        loaded: type[Schema] = load_reference(schema)
        return loaded
    return schema
