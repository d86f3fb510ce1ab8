"""The worker's Celery app with a no-op job type registered: benchmark (e), the engine alone.

``celery --app tests.bench.noop_worker worker ...`` runs the Procfile's processes with one
more job type, ``bench.noop``: its planner yields ``payload["executions"]`` empty items and
its executor reports each claim a success at once, so a job of it costs only the engine —
fan-out, dispatch, claim, finish, counters — and none of a job type's own work.

(Registered from the bench for now; the job-type-package issue will make it an installable
example.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from shared.engine.claim import Claim
from shared.engine.outcomes import Outcome
from shared.engine.registry import PlannedItem, Report, register_executor, register_planner
from shared.models import Job
from worker import app

NOOP_JOB_TYPE = "bench.noop"
_DONE = Outcome.succeeded({})


def plan_noops(_session: Any, job: Job) -> Iterator[PlannedItem]:
    """``payload["executions"]`` items with nothing in them."""
    for index in range(int(job.payload["executions"])):
        yield PlannedItem(key=str(index), item={})


class NoopExecutor:
    """Every claim succeeds at once, with an empty result."""

    async def execute(self, claims: Sequence[Claim], report: Report) -> None:
        for claim in claims:
            report(claim, _DONE)


register_planner(NOOP_JOB_TYPE, plan_noops)
register_executor(NOOP_JOB_TYPE, NoopExecutor())

__all__ = ["NOOP_JOB_TYPE", "app"]
