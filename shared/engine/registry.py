"""Job types: each registers a planner (what its executions are) and an executor (how a
group of them is done). The engine looks them up by ``Job.type``.

Planners run in the fan-out (sync, with a Session); executors run in the worker's event
loop and report one :class:`~shared.engine.outcomes.Outcome` per claimed execution.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from shared.engine.claim import Claim
    from shared.engine.outcomes import Outcome
    from shared.models import Job


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


_planners: dict[str, Planner] = {}
_executors: dict[str, Executor] = {}
_preparers: dict[str, Preparer] = {}
# Types whose executions are each a big piece of work (a batch of 1,000 source rows) are
# handed out in smaller groups than the default; see dispatch's weighting.
_group_sizes: dict[str, int] = {}


class UnknownJobType(LookupError):
    """No planner or executor is registered for a job type in this process."""


def register_planner(job_type: str, planner: Planner) -> None:
    _planners[job_type] = planner


def register_executor(job_type: str, executor: Executor) -> None:
    _executors[job_type] = executor


def register_preparer(job_type: str, preparer: Preparer) -> None:
    _preparers[job_type] = preparer


def register_group_size(job_type: str, size: int) -> None:
    _group_sizes[job_type] = size


def group_size_for(job_type: str) -> int | None:
    """The type's own group size, or None for the default (``JOBYARD_GROUP_SIZE``)."""
    return _group_sizes.get(job_type)


def preparer_for(job_type: str) -> Preparer | None:
    return _preparers.get(job_type)


def planner_for(job_type: str) -> Planner:
    try:
        return _planners[job_type]
    except KeyError:
        raise UnknownJobType(f"no planner registered for job type {job_type!r}") from None


def executor_for(job_type: str) -> Executor:
    try:
        return _executors[job_type]
    except KeyError:
        raise UnknownJobType(f"no executor registered for job type {job_type!r}") from None
