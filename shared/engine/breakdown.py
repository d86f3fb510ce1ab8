"""A job's executions broken down by one key of their ``item`` (a run's model, a batch's
input): the counts by status per value, for the dashboard. Which key is the job type's
to say (:attr:`shared.engine.job_types.JobTypeSpec.breakdown_key`); the engine never
looks further inside an item."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import Execution, ExecutionStatus

# A job of 100,000 inputs is not broken down into 100,000 lines: the first values (by
# text) are shown, and the page says how many more there are.
MAX_VALUES = 50


@dataclass
class BreakdownRow:
    """The executions of one value of the key, by status."""

    value: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)


@dataclass(frozen=True)
class Breakdown:
    key: str
    rows: list[BreakdownRow]
    more: int  # values beyond the rows shown


def breakdown(session: Session, job_id: uuid.UUID, key: str, limit: int = MAX_VALUES) -> Breakdown:
    """The job's written executions by ``item[key]`` and status (one aggregate query)."""
    value = Execution.item[key].as_string()
    rows = session.execute(
        select(value, Execution.status, func.count())
        .where(Execution.job_id == job_id)
        .group_by(value, Execution.status)
    ).all()
    by_value: dict[str, BreakdownRow] = {}
    for found, status, count in rows:
        name = "" if found is None else str(found)
        by_value.setdefault(name, BreakdownRow(name)).counts[str(status)] = int(count)
    ordered = [by_value[name] for name in sorted(by_value)]
    return Breakdown(key, ordered[:limit], max(0, len(ordered) - limit))


STATUSES = tuple(status.value for status in ExecutionStatus)
