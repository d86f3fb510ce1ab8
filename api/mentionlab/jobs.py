"""``/api/jobs``: trigger a run of every project query on AI models, list, read, cancel and
retry jobs (their live progress: :mod:`api.mentionlab.events`)."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_principal
from api.idempotency import create_endpoint
from api.mentionlab.context import (
    authenticate_first,
    context_headers,
    listing_headers,
    project_headers,
    project_id_header,
    required_project_id,
)
from api.mentionlab.envelope import nest_envelope
from api.mentionlab.schemas import (
    ExecutionSchema,
    JobDetailSchema,
    JobListFilterSchema,
    JobPageArgs,
    JobSchema,
    RetryJobSchema,
    TriggerJobSchema,
    page_envelope,
    page_schema,
)
from api.transaction import request_session, request_work
from shared.engine import job_types
from shared.engine import jobs as engine_jobs
from shared.engine.retry import retry_failed
from shared.mentionlab import runs
from shared.mentionlab.runs import AI_QUERIES
from shared.models import Job

blp = Blueprint(
    "mentionlab-jobs", __name__, url_prefix="/api/jobs", description="Jobs (Mentionlab)"
)
blp.before_request(authenticate_first)


@blp.route("/trigger")
class TriggerJob(MethodView):
    @create_endpoint(nest_envelope, creates_jobs=True)
    @project_headers
    @blp.arguments(TriggerJobSchema)
    @blp.response(201, JobSchema)
    @blp.alt_response(
        422,
        description="The project has no queries, a model's provider is not configured, or "
        "the job would have more than JOBYARD_MAX_EXECUTIONS_PER_JOB executions",
    )
    def post(self, body: dict[str, Any]) -> Job:
        """Trigger an execution for all project queries"""
        work = request_work()
        job = runs.trigger_ai_job(
            work,
            current_principal(),
            required_project_id(),
            body["aiModels"],
            body["executionCount"],
        )
        job_types.attach_owners(work.session, [job])
        return job


@blp.route("/list")
class JobList(MethodView):
    @listing_headers
    @blp.arguments(JobPageArgs, location="query")
    @blp.arguments(JobListFilterSchema)
    @blp.response(200, page_schema(JobSchema))
    def post(self, paging: dict[str, Any], filters: dict[str, Any]) -> dict[str, Any]:
        """List AI runs (of the x-project-id project when given)

        The organisation's jobs of type ai_queries: batches (super.AI's family) and
        knowledge-base sync runs (Smart DB's) are listed there, and every type in
        Valpay's GET /v1/jobs.
        """
        session = request_session()
        page = runs.list_jobs(
            session,
            current_principal(),
            project_id=project_id_header(required=False),
            status=filters.get("status"),
            created_by=filters.get("createdBy"),
            sort=[(s["field"], s["direction"]) for s in filters["sort"]],
            limit=paging["limit"],
            page=paging["page"],
        )
        job_types.attach_owners(session, page.items)
        return page_envelope(page)


@blp.route("/<uuid:job_id>")
class JobById(MethodView):
    @context_headers
    @blp.response(200, JobDetailSchema)
    def get(self, job_id: uuid.UUID) -> Job:
        """Get one AI run with its counters and a summary per AI model

        A job of another type (a batch, a sync run) is a 404 here: read it with
        GET /v1/jobs/{jobId}.
        """
        session = request_session()
        job = runs.get_job_detail(session, current_principal(), job_id)
        job_types.attach_owners(session, [job])
        return job


@blp.route("/<uuid:job_id>/cancel")
class CancelJob(MethodView):
    @context_headers
    @blp.response(200, JobSchema)
    @blp.alt_response(409, description="The job has already finished")
    def post(self, job_id: uuid.UUID) -> Job:
        """Cancel an AI run: unfinished executions end failed with error "canceled"."""
        work = request_work()
        job = engine_jobs.cancel_job(work, current_principal().organisation_id, job_id, AI_QUERIES)
        job_types.attach_owners(work.session, [job])
        return job


@blp.route("/<uuid:job_id>/retry")
class RetryJob(MethodView):
    @create_endpoint(nest_envelope, creates_jobs=True)
    @context_headers
    @blp.arguments(RetryJobSchema, required=False)
    @blp.response(200, JobSchema)
    @blp.alt_response(404, description="No such job, or a named execution is not the job's")
    @blp.alt_response(
        409,
        description="The job has not finished (or runs again after a retry), was canceled, "
        "or has nothing failed to retry (a named execution did not fail)",
    )
    def post(self, body: dict[str, Any], job_id: uuid.UUID) -> Job:
        """Run a finished AI run's failed executions again

        Every failed execution (or only `executionIds`) goes back to pending with a fresh
        attempt budget; the job is processing again and ends again (a new callback and
        live-progress end). Its cost keeps what the failed attempts cost. A canceled job
        is not retried. Counts against the organisation's quotas like new work.
        """
        work = request_work()
        job = retry_failed(
            work,
            current_principal().organisation_id,
            job_id,
            AI_QUERIES,
            (body or {}).get("executionIds"),
        )
        job_types.attach_owners(work.session, [job])
        return job


@blp.route("/<uuid:job_id>/executions")
class JobExecutions(MethodView):
    @context_headers
    @blp.arguments(JobPageArgs, location="query")
    @blp.response(200, page_schema(ExecutionSchema))
    def get(self, paging: dict[str, Any], job_id: uuid.UUID) -> dict[str, Any]:
        """List an AI run's executions"""
        session = request_session()
        page = engine_jobs.list_executions(
            session,
            current_principal().organisation_id,
            job_id,
            limit=paging["limit"],
            page=paging["page"],
            job_type=AI_QUERIES,
        )
        return page_envelope(page)
