"""``echo``: the smallest job type, installed from outside jobyard's tree.

``POST /v1/jobs {"jobType": "echo", "payload": {"items": [1, "two", {"three": 3}]}}``
makes one execution per item, whose result is the item itself. Everything jobyard needs is
the :data:`SPEC` this package's entry point names (``jobyard.job_types``): a planner (the
executions), an executor (the work), the payload schema and the create that Valpay's
``/v1/jobs`` uses. Nothing in jobyard lists it.

With no work of its own, it is also the benchmarks' engine-alone job type: what an
execution costs the engine — fan-out, dispatch, claim, finish, counters — and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from marshmallow import Schema, fields, validate

from shared.accounts.auth import Principal
from shared.db import UnitOfWork
from shared.engine import quotas
from shared.engine.claim import Claim
from shared.engine.job_types import JobTypeSpec, PlannedItem, Report
from shared.engine.jobs import dispatch_after_commit, new_job
from shared.engine.outcomes import Outcome
from shared.models import Job

NAME = "echo"


class EchoPayload(Schema):
    """``{"items": [...]}``: each item, any JSON value, is one execution."""

    items = fields.List(
        fields.Raw(allow_none=True),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "Any JSON values: each is one execution, echoed as its result"},
    )


def plan(_session: Any, job: Job) -> Iterator[PlannedItem]:
    """One execution per item, in order."""
    for index, value in enumerate(job.payload["items"]):
        yield PlannedItem(key=str(index), item={"value": value})


class EchoExecutor:
    """Each execution succeeds at once with its item as the result."""

    async def execute(self, claims: Sequence[Claim], report: Report) -> None:
        for claim in claims:
            report(claim, Outcome.succeeded(claim.item["value"]))


def create(work: UnitOfWork, principal: Principal, payload: dict[str, Any]) -> Job:
    """Accept an echo job in the caller's unit of work: within the organisation's quotas,
    fanned out once that commits."""
    items = payload["items"]
    quotas.admit(work.session, principal.organisation_id, jobs=1, executions=len(items))
    job = new_job(
        organisation_id=principal.organisation_id,
        job_type=NAME,
        total=len(items),
        payload={"items": items},
        created_by_user_id=principal.user_id,
    )
    work.session.add(job)
    work.session.flush()
    work.session.refresh(job)  # as stored, with its creator, for the answer
    dispatch_after_commit(work, [job.id])
    return job


SPEC = JobTypeSpec(
    name=NAME,
    description="Each item of the payload is one execution, echoed as its result",
    planner=plan,
    executor=EchoExecutor(),
    payload_schema=EchoPayload,
    create=create,
    result_type="echoes",
)
