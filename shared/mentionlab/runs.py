"""AI runs: a job of type ``ai_queries`` asks every query of a project each model N times.

Its planner yields one execution per query x model x run, carrying everything the
executor needs as the item (``queryId, model, run, language, country``); the answer's
digest (``summary.mentioned``: does it name the project?) feeds the per-model summary.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from shared.accounts.auth import Principal
from shared.ai_models import ensure_models_available, resolve_model
from shared.db import UnitOfWork
from shared.engine import quotas
from shared.engine.job_types import PlannedItem
from shared.engine.jobs import dispatch_after_commit, get_job, new_job
from shared.errors import Unprocessable
from shared.mentionlab.models import AiRun, Project, Query
from shared.mentionlab.projects import get_project
from shared.models import Execution, Job
from shared.paging import Page, paginate
from shared.settings import get_settings

AI_QUERIES = "ai_queries"  # the job type (shared.mentionlab.job_type)


def trigger_ai_job(
    work: UnitOfWork,
    principal: Principal,
    project_id: uuid.UUID,
    ai_models: list[str],
    execution_count: int,
) -> Job:
    """Run every query of the project on each model ``execution_count`` times, in the
    caller's unit of work; the job's fan-out is published once it has committed."""
    session = work.session
    project = get_project(session, principal, project_id)  # 404 before any 422
    query_ids = list(
        session.scalars(
            select(Query.id)
            .where(Query.project_id == project.id)
            .order_by(Query.created_at, Query.id)
        )
    )
    _, total = plan_ai_job(project, query_ids, ai_models, execution_count)
    quotas.admit(session, project.organisation_id, jobs=1, executions=total)
    job = create_ai_job(
        session,
        project,
        query_ids,
        ai_models,
        execution_count,
        created_by_user_id=principal.user_id,
    )
    session.refresh(job)  # as stored, with its creator, for the answer
    dispatch_after_commit(work, [job.id])
    return job


def plan_ai_job(
    project: Project, query_ids: list[uuid.UUID], ai_models: list[str], execution_count: int
) -> tuple[list[str], int]:
    """The models an ai_queries job would run and its execution count, checked without
    writing anything: Unprocessable when there is nothing to run, a provider is not
    configured or the job is too large."""
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
    return models, total


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
    commit (:func:`dispatch_after_commit`). Raises Unprocessable when there is nothing to
    run (:func:`plan_ai_job`)."""
    models, total = plan_ai_job(project, query_ids, ai_models, execution_count)
    job = new_job(
        organisation_id=project.organisation_id,
        job_type=AI_QUERIES,
        total=total,
        created_by_user_id=created_by_user_id,
        payload={
            "aiModels": models,
            "executionCount": execution_count,
            "queryIds": [str(q) for q in query_ids],
        },
        metadata=metadata,
    )
    session.add(job)
    session.flush()
    session.add(AiRun(job_id=job.id, project_id=project.id))
    return job


def job_projects(session: Session, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """The project of each of these AI runs (the spec's ``owners``), in one read."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(AiRun.job_id, AiRun.project_id).where(AiRun.job_id.in_(list(job_ids)))
    )
    return {job_id: project_id for job_id, project_id in rows}


def plan_ai_runs(session: Session, job: Job) -> Iterator[PlannedItem]:
    """The items of an ai_queries job: every query x model x run, in that order.

    Each model is resolved here, once for the job, to its provider and vendor name, which
    every item carries (``provider``, ``vendorModel``): the worker reads them from the item
    and never looks the model up again."""
    models = {model: _resolved(model) for model in job.payload["aiModels"]}
    query_ids = [uuid.UUID(q) for q in job.payload["queryIds"]]
    queries = {q.id: q for q in session.scalars(select(Query).where(Query.id.in_(query_ids)))}
    runs = range(1, int(job.payload["executionCount"]) + 1)
    for query_id in query_ids:
        query = queries.get(query_id)
        language = query.language if query else None
        country = query.country if query else None
        query_key = str(query_id)  # once per query: a UUID's str() is slow
        for model, resolved in models.items():
            key_prefix = f"{query_key}:{model}:"
            for run in runs:
                yield PlannedItem(
                    key=f"{key_prefix}{run}",
                    item={
                        "queryId": query_key,
                        "model": model,
                        "run": run,
                        "language": language,
                        "country": country,
                        **resolved,
                    },
                )


def _resolved(model: str) -> dict[str, str]:
    """The item's fields naming what answers ``model`` (none for an id no longer known:
    its executions then fail in the worker, as they did before it was resolved here)."""
    try:
        resolved = resolve_model(model)
    except KeyError:
        return {}
    return {"provider": resolved.provider, "vendorModel": resolved.vendor_model}


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
    """Per model: executions by status and the mention rate (one aggregate query over the
    rows' small item and summary documents, never their results).

    Executions the fan-out has not written yet count as pending for their model.
    """
    model = Execution.item["model"].as_string()
    mentioned = Execution.summary["mentioned"].as_boolean()
    rows = session.execute(
        select(model, Execution.status, func.count(), func.count().filter(mentioned.is_(True)))
        .where(Execution.job_id == job.id)
        .group_by(model, Execution.status)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for name, status, count, mentions in rows:
        entry = counts.setdefault(name or "", {"mentioned": 0})
        entry[status] = count
        entry["mentioned"] += mentions
    models = list(job.payload.get("aiModels", [])) or sorted(counts)
    per_model = job.total // len(models) if models else 0
    summaries = []
    for name in models:
        entry = counts.get(name, {"mentioned": 0})
        written = sum(entry.get(s, 0) for s in ("pending", "retrying", "success", "failed"))
        summaries.append(
            ModelSummary(
                model=name,
                total=per_model if job.canceled_at is None else written,
                pending=entry.get("pending", 0) + max(0, per_model - written)
                if job.canceled_at is None
                else entry.get("pending", 0),
                retrying=entry.get("retrying", 0),
                success=entry.get("success", 0),
                failed=entry.get("failed", 0),
                mentioned=entry["mentioned"],
            )
        )
    return summaries


def get_job_detail(session: Session, principal: Principal, job_id: uuid.UUID) -> Job:
    """The caller's AI run with ``model_summaries`` (per-model counts and mention rate);
    a job of another type is not one of Mentionlab's (NotFound)."""
    job = get_job(session, principal.organisation_id, job_id, AI_QUERIES)
    job.model_summaries = summarize_models(session, job)  # type: ignore[attr-defined]
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
    """The caller's AI runs (of one project when given), filtered and sorted, one page.
    Mentionlab's API is about AI-visibility runs: batches and sync runs have no models
    or execution count and sync runs no project, so they are listed by their own
    families (and every type by Valpay's ``/v1/jobs``)."""
    stmt = select(Job).where(
        Job.organisation_id == principal.organisation_id, Job.type == AI_QUERIES
    )
    if project_id is not None:
        project: Project = get_project(session, principal, project_id)
        # Through ai_runs' index on project_id, as the job row's own column was.
        stmt = stmt.where(Job.id.in_(select(AiRun.job_id).where(AiRun.project_id == project.id)))
    if status:
        stmt = stmt.where(Job.status == status)
    if created_by is not None:
        stmt = stmt.where(Job.created_by_user_id == created_by)
    order: list[ColumnElement[Any]] = [
        JOB_SORT_COLUMNS[f].desc() if d == "DESC" else JOB_SORT_COLUMNS[f].asc() for f, d in sort
    ]
    stmt = stmt.order_by(*order, Job.created_at.desc(), Job.id)
    return paginate(session, stmt, limit, page)
