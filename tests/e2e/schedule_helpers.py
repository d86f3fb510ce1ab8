"""Helpers of the schedule end-to-end tests: plans, due slots, and the jobs they made."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from flask.testing import FlaskClient
from sqlalchemy import select

from shared.db import session_scope
from shared.mentionlab.models import AiRun
from shared.mentionlab.recurrence import RECURRENCE_KIND
from shared.messaging import publisher
from shared.messaging.queues import SCHEDULE_TICK_TASK
from shared.models import Job
from tests.periodic_support import next_slot, set_next_slot
from tests.support import Tenant

T = TypeVar("T")


def create_cached_jobs(
    client: FlaskClient, tenant: Tenant, items: list[tuple[uuid.UUID, list[str], int]]
) -> list[dict[str, Any]]:
    """POST /api/cached-jobs/many for (query id, provider keys, executionCount) items."""
    body = {
        "cachedJobs": [
            {"queryId": str(q), "aiModels": keys, "executionCount": runs} for q, keys, runs in items
        ]
    }
    response = client.post("/api/cached-jobs/many", headers=tenant.headers(), json=body)
    assert response.status_code == 201, response.json
    created: list[dict[str, Any]] = response.json
    return created


def set_recurrence(client: FlaskClient, tenant: Tenant, recurrence: str) -> None:
    response = client.patch(
        "/api/projects", headers=tenant.headers(), json={"recurrence": recurrence}
    )
    assert response.status_code == 200, response.json


def make_due(project_id: uuid.UUID, ago: timedelta = timedelta(seconds=1)) -> datetime:
    """Put the project's next slot in the past; returns the slot as stored."""
    slot = set_next_slot(RECURRENCE_KIND, project_id, datetime.now(UTC) - ago)
    assert slot is not None
    return slot


def next_run_at(project_id: uuid.UUID) -> datetime | None:
    return next_slot(RECURRENCE_KIND, project_id)


def publish_tick() -> None:
    """What beat does every JOBYARD_SCHEDULE_TICK_SECONDS."""
    publisher.publish(SCHEDULE_TICK_TASK, [])


def wait_until(
    probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 30, what: str = ""
) -> T:
    """Poll ``probe`` until ``done`` holds for its value (else TimeoutError with the value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'condition'} not reached: {value!r}")
        time.sleep(0.1)


def scheduled_jobs(project_id: uuid.UUID) -> list[Job]:
    """The project's jobs that the schedule created, oldest first."""
    with session_scope() as session:
        jobs = session.scalars(
            select(Job)
            .where(Job.id.in_(select(AiRun.job_id).where(AiRun.project_id == project_id)))
            .order_by(Job.created_at, Job.id)
        ).all()
    return [j for j in jobs if j.metadata_.get("trigger") == "schedule"]


def runs_per_slot(project_id: uuid.UUID) -> Counter[tuple[str, str]]:
    """How many jobs each (slot, cached job) got."""
    return Counter(
        (j.metadata_["slot"], j.metadata_["cachedJobId"]) for j in scheduled_jobs(project_id)
    )
