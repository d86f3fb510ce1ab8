"""Accepting jobs and reading them back.

Accepting follows the lifecycle's first step: the job is written and committed, and only
then is its fan-out published. When publishing fails the job is still accepted; its
``dispatched_at`` is cleared so the recovery sweep publishes it once the broker is back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from shared import publisher
from shared.ai_models import ensure_models_available
from shared.db import session_scope
from shared.errors import Conflict, NotFound, Unprocessable
from shared.models import Execution, Job, JobStatus, JobType, Project, Query, utcnow
from shared.services.auth import Principal
from shared.services.lifecycle import cancel_executions
from shared.services.projects import Page, get_project, paginate
from shared.settings import get_settings


def trigger_ai_job(
    principal: Principal, project_id: uuid.UUID, ai_models: list[str], execution_count: int
) -> Job:
    """Run every query of the project on each model ``execution_count`` times."""
    with session_scope() as session:
        project = get_project(session, principal, project_id)  # 404 before any 422
        query_ids = list(
            session.scalars(
                select(Query.id)
                .where(Query.project_id == project.id)
                .order_by(Query.created_at, Query.id)
            )
        )
        job = create_ai_job(
            session,
            project,
            query_ids,
            ai_models,
            execution_count,
            created_by_user_id=principal.user_id,
        )
        job_id = job.id
    dispatch_job(job_id)
    with session_scope() as session:
        return get_job(session, principal, job_id)


def create_ai_job(
    session: Session,
    project: Project,
    query_ids: list[uuid.UUID],
    ai_models: list[str],
    execution_count: int,
    *,
    created_by_user_id: uuid.UUID | None,
    metadata: dict[str, Any] | None = None,
) -> Job:
    """Write an ai_queries job in the caller's transaction; the caller dispatches it after
    commit (:func:`dispatch_job`). Raises Unprocessable when there is nothing to run."""
    settings = get_settings()
    models = list(dict.fromkeys(ai_models))  # a model named twice runs once, not twice
    ensure_models_available(models, settings)
    if not query_ids:
        raise Unprocessable(
            f"Project {project.id} has no queries: add queries before triggering a job"
        )
    total = len(query_ids) * len(models) * execution_count
    if total > settings.max_executions_per_job:
        raise Unprocessable(
            f"This job would have {total} executions; the limit is "
            f"{settings.max_executions_per_job} (JOBYARD_MAX_EXECUTIONS_PER_JOB)"
        )
    job = Job(
        organisation_id=project.organisation_id,
        project_id=project.id,
        type=JobType.AI_QUERIES.value,
        total=total,
        pending=total,
        max_attempts=settings.max_attempts,
        created_by_user_id=created_by_user_id,
        payload={
            "aiModels": models,
            "executionCount": execution_count,
            "queryIds": [str(q) for q in query_ids],
        },
        metadata_=metadata or {},
        dispatched_at=utcnow(),
    )
    session.add(job)
    session.flush()
    return job


def dispatch_jobs(job_ids: list[uuid.UUID]) -> int:
    """Publish committed jobs' fan-outs (one broker connection for all of them); those
    that could not be published are left to the recovery sweep. Returns how many went."""
    unpublished = publisher.publish_fan_outs(job_ids)
    if unpublished:
        with session_scope() as session:
            session.execute(update(Job).where(Job.id.in_(unpublished)).values(dispatched_at=None))
    return len(job_ids) - len(unpublished)


def dispatch_job(job_id: uuid.UUID) -> bool:
    """Publish one committed job's fan-out (see :func:`dispatch_jobs`)."""
    return dispatch_jobs([job_id]) == 1


TERMINAL_STATUSES = (
    JobStatus.COMPLETED.value,
    JobStatus.FAILED.value,
    JobStatus.PARTIAL_FAILED.value,
)


def cancel_job(principal: Principal, job_id: uuid.UUID) -> Job:
    """Cancel the caller's job: no new attempt starts and every unfinished execution ends
    failed with error ``canceled``. Canceling a canceled job changes nothing; a finished
    job cannot be canceled (Conflict)."""
    with session_scope() as session:
        job = get_job(session, principal, job_id)
        if job.canceled_at is None:
            if job.status in TERMINAL_STATUSES:
                raise Conflict(f"Job {job_id} has already finished ({job.status})")
            cancel_executions(session, job.id)
    with session_scope() as session:
        return get_job(session, principal, job_id)


@dataclass(frozen=True)
class ModelSummary:
    """How one AI model fared in a job."""

    model: str
    total: int
    pending: int
    retrying: int
    success: int
    failed: int
    mentioned: int  # successful answers that name the project

    @property
    def mention_rate(self) -> float | None:
        """Share of successful answers that mention the project (None before any)."""
        return round(self.mentioned / self.success, 4) if self.success else None


def summarize_models(session: Session, job: Job) -> list[ModelSummary]:
    """Per model: executions by status and the mention rate (one aggregate query).

    Executions the fan-out has not written yet count as pending for their model.
    """
    rows = session.execute(
        select(
            Execution.model,
            Execution.status,
            func.count(),
            func.count().filter(Execution.primary_mentioned.is_(True)),
        )
        .where(Execution.job_id == job.id)
        .group_by(Execution.model, Execution.status)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for model, status, count, mentioned in rows:
        entry = counts.setdefault(model or "", {"mentioned": 0})
        entry[status] = count
        entry["mentioned"] += mentioned
    models = list(job.payload.get("aiModels", [])) or sorted(counts)
    per_model = job.total // len(models) if models else 0
    summaries = []
    for model in models:
        entry = counts.get(model, {"mentioned": 0})
        written = sum(entry.get(s, 0) for s in ("pending", "retrying", "success", "failed"))
        summaries.append(
            ModelSummary(
                model=model,
                total=per_model,
                pending=entry.get("pending", 0) + per_model - written,
                retrying=entry.get("retrying", 0),
                success=entry.get("success", 0),
                failed=entry.get("failed", 0),
                mentioned=entry["mentioned"],
            )
        )
    return summaries


def get_job_detail(session: Session, principal: Principal, job_id: uuid.UUID) -> Job:
    """The caller's job with ``model_summaries`` (per-model counts and mention rate)."""
    job = get_job(session, principal, job_id)
    job.model_summaries = summarize_models(session, job)  # type: ignore[attr-defined]
    return job


def get_job(session: Session, principal: Principal, job_id: uuid.UUID) -> Job:
    """The caller's job, or NotFound (also for another tenant's)."""
    job = session.get(Job, job_id)
    if job is None or job.organisation_id != principal.organisation_id:
        raise NotFound(f"Job {job_id} not found")
    return job


JOB_SORT_COLUMNS: dict[str, Any] = {
    "createdAt": Job.created_at,
    "updatedAt": Job.updated_at,
    "status": Job.status,
}


def list_jobs(
    session: Session,
    principal: Principal,
    *,
    project_id: uuid.UUID | None,
    status: str | None,
    created_by: uuid.UUID | None,
    sort: list[tuple[str, str]],
    limit: int,
    page: int,
) -> Page:
    """The caller's jobs (of one project when given), filtered and sorted, one page."""
    stmt = select(Job).where(Job.organisation_id == principal.organisation_id)
    if project_id is not None:
        project: Project = get_project(session, principal, project_id)
        stmt = stmt.where(Job.project_id == project.id)
    if status:
        stmt = stmt.where(Job.status == status)
    if created_by is not None:
        stmt = stmt.where(Job.created_by_user_id == created_by)
    order: list[ColumnElement[Any]] = [
        JOB_SORT_COLUMNS[f].desc() if d == "DESC" else JOB_SORT_COLUMNS[f].asc() for f, d in sort
    ]
    stmt = stmt.order_by(*order, Job.created_at.desc(), Job.id)
    return paginate(session, stmt, limit, page)


def get_execution(session: Session, principal: Principal, execution_id: uuid.UUID) -> Execution:
    """The caller's execution, or NotFound."""
    row = session.execute(
        select(Execution, Job.organisation_id)
        .join(Job, Job.id == Execution.job_id)
        .where(Execution.id == execution_id)
    ).one_or_none()
    if row is None or row[1] != principal.organisation_id:
        raise NotFound(f"Job execution {execution_id} not found")
    execution: Execution = row[0]
    return execution


def list_executions(
    session: Session, principal: Principal, job_id: uuid.UUID, *, limit: int, page: int
) -> Page:
    """A job's executions in a stable order (query, model, run), one page."""
    job = get_job(session, principal, job_id)
    stmt = (
        select(Execution)
        .where(Execution.job_id == job.id)
        .order_by(Execution.created_at, Execution.item_key)
    )
    return paginate(session, stmt, limit, page)
