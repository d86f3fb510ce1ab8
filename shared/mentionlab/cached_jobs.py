"""Cached jobs: one recurring execution plan per (project, query), and running them.

A plan names the query, the AI models (asked for by provider key, stored as each
provider's default model id) and how many runs each. Every run of a plan — triggered now
through the API, or by the schedule — is an ordinary ``ai_queries`` Job of that one query,
written with :func:`shared.mentionlab.runs.create_ai_job` and dispatched after commit.

Status: ``pending`` (never run), ``active`` (its last run is in progress), ``ended`` (its
last run finished, possibly with failures), ``inactive`` (the project's recurrence is
paused). The stored column is authoritative except for the step active → ended: that one
follows from the last job's status, so readers derive it (:func:`effective_status`: a read
is never stale), and the job's ``job.finished`` event writes it down
(:func:`settle_finished_jobs`, an outbox consumer): no worker code knows about cached jobs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.accounts.auth import Principal
from shared.ai_models import PROVIDERS, ensure_models_available
from shared.db import UnitOfWork
from shared.engine import quotas
from shared.engine.jobs import dispatch_after_commit, get_job
from shared.engine.outbox import Event
from shared.errors import InvalidInput, NotFound, Unprocessable
from shared.mentionlab.models import CachedJob, CachedJobStatus, Project, Query
from shared.mentionlab.projects import get_project
from shared.mentionlab.runs import create_ai_job, plan_ai_job
from shared.models import TERMINAL_JOB_STATUSES, Job, utcnow
from shared.paging import Page, paginate
from shared.scoping import get_owned
from shared.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedJobPlan:
    """One item of a create-many request."""

    query_id: uuid.UUID
    provider_keys: list[str]
    execution_count: int


def resolve_provider_keys(keys: list[str], field: str = "aiModels") -> list[str]:
    """The concrete model ids of provider keys (each provider's default model), in order."""
    unknown = [k for k in keys if k not in PROVIDERS]
    if unknown:
        message = f"{field}: unknown provider '{unknown[0]}'; one of: {', '.join(PROVIDERS)}"
        raise InvalidInput(message, details=[message])
    return list(dict.fromkeys(PROVIDERS[k].default_model for k in keys))


def effective_status(cached_job: CachedJob) -> str:
    """The status a reader sees: ``active`` turns ``ended`` once the last job is terminal."""
    if cached_job.status == CachedJobStatus.ACTIVE.value:
        job = cached_job.last_job
        if job is None or job.status in TERMINAL_JOB_STATUSES:
            return CachedJobStatus.ENDED.value
    return cached_job.status


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert the plans; a (project, query) that has one already gets the new plan."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(CachedJob)
    elif dialect == "sqlite":
        stmt = sqlite.insert(CachedJob)
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(dialect)
    stmt = stmt.on_conflict_do_update(
        index_elements=[CachedJob.project_id, CachedJob.query_id],
        set_={
            "ai_models": stmt.excluded.ai_models,
            "provider_keys": stmt.excluded.provider_keys,
            "execution_count": stmt.excluded.execution_count,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    session.execute(stmt, rows)


def create_many(
    session: Session, principal: Principal, project_id: uuid.UUID, plans: list[CachedJobPlan]
) -> list[CachedJob]:
    """Create (or update: one plan per query) the cached jobs of a project, in request order.

    Refusals, in this order: a query listed twice (400), a query that is not the
    project's (404 naming it), a provider that is not configured or a run over the
    execution limit (422). Nothing is written unless every item is accepted.
    """
    project = get_project(session, principal, project_id)
    seen: set[uuid.UUID] = set()
    for index, plan in enumerate(plans):
        if plan.query_id in seen:
            message = f"cachedJobs.{index}.queryId: query {plan.query_id} is listed more than once"
            raise InvalidInput(message, details=[message])
        seen.add(plan.query_id)
    query_ids = [plan.query_id for plan in plans]
    found = set(
        session.scalars(
            select(Query.id).where(Query.project_id == project.id, Query.id.in_(query_ids))
        )
    )
    for query_id in query_ids:
        if query_id not in found:
            raise NotFound(f"Query {query_id} not found")

    settings = get_settings()
    now = utcnow()
    status = (
        CachedJobStatus.INACTIVE
        if project.recurrence_status == "paused"
        else CachedJobStatus.PENDING
    )
    rows = []
    run_size = 0  # the executions of one run of every plan of the request
    for index, plan in enumerate(plans):
        keys = list(dict.fromkeys(plan.provider_keys))
        models = resolve_provider_keys(keys, f"cachedJobs.{index}.aiModels")
        ensure_models_available(models, settings)
        total = len(models) * plan.execution_count
        if total > settings.max_executions_per_job:
            raise Unprocessable(
                f"cachedJobs.{index}: each run would have {total} executions; the limit is "
                f"{settings.max_executions_per_job} (JOBYARD_MAX_EXECUTIONS_PER_JOB)"
            )
        run_size += total
        rows.append(
            {
                "id": uuid.uuid4(),
                "organisation_id": project.organisation_id,
                "project_id": project.id,
                "query_id": plan.query_id,
                "ai_models": models,
                "provider_keys": keys,
                "execution_count": plan.execution_count,
                "status": status.value,
                "restricted": False,
                # One microsecond apart: lists and runs keep the request's order.
                "created_at": now + timedelta(microseconds=index),
                "updated_at": now + timedelta(microseconds=index),
            }
        )
    # The plans are work to come: one trigger runs them all, so what one request may
    # create bounds them too.
    quotas.check_request(jobs=len(rows), executions=run_size)
    _upsert(session, rows)
    stored = {
        cj.query_id: cj
        for cj in session.scalars(
            select(CachedJob)
            .where(CachedJob.project_id == project.id, CachedJob.query_id.in_(query_ids))
            .execution_options(populate_existing=True)
        )
    }
    return [stored[query_id] for query_id in query_ids]


def get_cached_job(session: Session, principal: Principal, cached_job_id: uuid.UUID) -> CachedJob:
    """The caller's cached job, or NotFound (also for another tenant's)."""
    return get_owned(session, CachedJob, cached_job_id, principal.organisation_id, "Cached job")


CACHED_JOB_SORT_COLUMNS: dict[str, Any] = {
    "createdAt": CachedJob.created_at,
    "updatedAt": CachedJob.updated_at,
    "lastRunAt": CachedJob.last_run_at,
}


def list_cached_jobs(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    *,
    sort: list[tuple[str, str]],
    limit: int,
    page: int,
) -> Page:
    """A project's cached jobs, sorted (oldest first by default), one page."""
    project = get_project(session, principal, project_id)
    order: list[ColumnElement[Any]] = [
        CACHED_JOB_SORT_COLUMNS[f].desc() if d == "DESC" else CACHED_JOB_SORT_COLUMNS[f].asc()
        for f, d in sort
    ]
    stmt = (
        select(CachedJob)
        .where(CachedJob.project_id == project.id)
        .order_by(*order, CachedJob.created_at, CachedJob.id)
    )
    return paginate(session, stmt, limit, page)


def run_cached_jobs(
    session: Session,
    project: Project,
    *,
    created_by_user_id: uuid.UUID | None,
    metadata: dict[str, Any],
    skip_refused: bool,
) -> list[uuid.UUID]:
    """Write one ai_queries Job per non-inactive cached job of the project, in the caller's
    transaction; the caller dispatches the returned job ids after commit.

    With ``skip_refused`` (scheduled runs) a plan that cannot run (provider no longer
    configured, over the execution limit) is logged and skipped; otherwise the refusal
    propagates and nothing is written.
    """
    cached_jobs = list(
        session.scalars(
            select(CachedJob)
            .where(
                CachedJob.project_id == project.id,
                CachedJob.status != CachedJobStatus.INACTIVE.value,
            )
            .order_by(CachedJob.created_at, CachedJob.id)
        )
    )
    if not skip_refused and cached_jobs:
        # A request: every plan is checked, and the request's whole size admitted by the
        # quotas, before any job is written.
        planned = [
            plan_ai_job(project, [cj.query_id], list(cj.ai_models), cj.execution_count)[1]
            for cj in cached_jobs
        ]
        quotas.admit(session, project.organisation_id, jobs=len(planned), executions=sum(planned))
    now = utcnow()
    job_ids: list[uuid.UUID] = []
    for cached_job in cached_jobs:
        try:
            # create_ai_job validates before it writes, so a refusal leaves nothing behind.
            job = create_ai_job(
                session,
                project,
                [cached_job.query_id],
                list(cached_job.ai_models),
                cached_job.execution_count,
                created_by_user_id=created_by_user_id,
                metadata={**metadata, "cachedJobId": str(cached_job.id)},
            )
        except Unprocessable as exc:
            if not skip_refused:
                raise
            log.warning("cached job %s not run: %s", cached_job.id, exc.message)
            continue
        cached_job.status = CachedJobStatus.ACTIVE.value
        cached_job.last_job = job
        cached_job.last_run_at = now
        job_ids.append(job.id)
    session.flush()
    return job_ids


def trigger_project(work: UnitOfWork, principal: Principal, project_id: uuid.UUID) -> list[Job]:
    """Run every non-inactive cached job of the project now: one Job each, in the
    caller's unit of work, each dispatched after commit. 422 when there is nothing to run."""
    session = work.session
    project = get_project(session, principal, project_id)
    job_ids = run_cached_jobs(
        session,
        project,
        created_by_user_id=principal.user_id,
        metadata={"trigger": "manual"},
        skip_refused=False,
    )
    if not job_ids:
        paused = " (its recurrence is paused: its cached jobs are inactive)"
        raise Unprocessable(
            f"Project {project.id} has no cached jobs to run"
            f"{paused if project.recurrence_status == 'paused' else ''}: "
            "create them with POST /api/cached-jobs/many"
        )
    dispatch_after_commit(work, job_ids)
    jobs = [get_job(session, principal.organisation_id, job_id) for job_id in job_ids]
    for job in jobs:
        session.refresh(job)
    return jobs


def settle_finished_jobs(session: Session, events: Sequence[Event]) -> None:
    """Outbox consumer of ``job.finished``: a cached job whose last job ended is ended
    (unless that job was retried before this event was drained: it is running again, and
    its next ``job.finished`` ends the cached job)."""
    job_ids = [e.job_id for e in events if e.job_id is not None]
    if job_ids:
        ended = select(Job.id).where(Job.id.in_(job_ids), Job.status.in_(TERMINAL_JOB_STATUSES))
        session.execute(
            update(CachedJob)
            .where(
                CachedJob.status == CachedJobStatus.ACTIVE.value,
                CachedJob.last_job_id.in_(ended),
            )
            .values(status=CachedJobStatus.ENDED.value)
            .execution_options(synchronize_session=False)
        )


def reopen_retried_jobs(connection: Any, events: Sequence[Event]) -> None:
    """In the transaction of a retry (``job.retried``): a cached job whose last job was
    run again is active again, until that job ends again (:func:`settle_finished_jobs`)."""
    job_ids = [e.job_id for e in events if e.job_id is not None]
    if job_ids:
        connection.execute(
            update(CachedJob)
            .where(
                CachedJob.status == CachedJobStatus.ENDED.value,
                CachedJob.last_job_id.in_(job_ids),
            )
            .values(status=CachedJobStatus.ACTIVE.value)
            .execution_options(synchronize_session=False)
        )
