"""``/api/jobs``: trigger a run of every project query on AI models, list, read and cancel
jobs (their live progress: :mod:`api.mentionlab.events`)."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_principal
from api.idempotency import create_endpoint
from api.mentionlab.context import (
    CONTEXT_HEADERS,
    PROJECT_HEADERS,
    authenticate_first,
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
    TriggerJobSchema,
    page_envelope,
    page_schema,
)
from shared.db import session_scope
from shared.engine import jobs as engine_jobs
from shared.mentionlab import runs
from shared.models import Job

blp = Blueprint(
    "mentionlab-jobs", __name__, url_prefix="/api/jobs", description="Jobs (Mentionlab)"
)
blp.before_request(authenticate_first)


@blp.route("/trigger")
class TriggerJob(MethodView):
    @create_endpoint(nest_envelope, creates_jobs=True)
    @blp.doc(parameters=PROJECT_HEADERS)
    @blp.arguments(TriggerJobSchema)
    @blp.response(201, JobSchema)
    @blp.alt_response(
        422,
        description="The project has no queries, a model's provider is not configured, or "
        "the job would have more than JOBYARD_MAX_EXECUTIONS_PER_JOB executions",
    )
    def post(self, body: dict[str, Any]) -> Job:
        """Trigger an execution for all project queries"""
        return runs.trigger_ai_job(
            current_principal(), required_project_id(), body["aiModels"], body["executionCount"]
        )


@blp.route("/list")
class JobList(MethodView):
    @blp.doc(parameters=CONTEXT_HEADERS)
    @blp.arguments(JobPageArgs, location="query")
    @blp.arguments(JobListFilterSchema)
    @blp.response(200, page_schema(JobSchema))
    def post(self, paging: dict[str, Any], filters: dict[str, Any]) -> dict[str, Any]:
        """List jobs (of the x-project-id project when given)"""
        with session_scope() as session:
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
            return page_envelope(page)


@blp.route("/<uuid:job_id>")
class JobById(MethodView):
    @blp.doc(parameters=CONTEXT_HEADERS)
    @blp.response(200, JobDetailSchema)
    def get(self, job_id: uuid.UUID) -> Job:
        """Get one job with its counters and a summary per AI model"""
        with session_scope() as session:
            return runs.get_job_detail(session, current_principal(), job_id)


@blp.route("/<uuid:job_id>/cancel")
class CancelJob(MethodView):
    @blp.doc(parameters=CONTEXT_HEADERS)
    @blp.response(200, JobSchema)
    @blp.alt_response(409, description="The job has already finished")
    def post(self, job_id: uuid.UUID) -> Job:
        """Cancel a job: unfinished executions end failed with error "canceled"."""
        return engine_jobs.cancel_job(current_principal().organisation_id, job_id)


@blp.route("/<uuid:job_id>/executions")
class JobExecutions(MethodView):
    @blp.doc(parameters=CONTEXT_HEADERS)
    @blp.arguments(JobPageArgs, location="query")
    @blp.response(200, page_schema(ExecutionSchema))
    def get(self, paging: dict[str, Any], job_id: uuid.UUID) -> dict[str, Any]:
        """List a job's executions"""
        with session_scope() as session:
            page = engine_jobs.list_executions(
                session,
                current_principal().organisation_id,
                job_id,
                limit=paging["limit"],
                page=paging["page"],
            )
            return page_envelope(page)
