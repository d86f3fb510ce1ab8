"""``/api/cached-jobs``: per-query recurring plans, run now or on the project's schedule."""

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
    project_headers,
    required_project_id,
)
from api.mentionlab.envelope import nest_envelope
from api.mentionlab.schemas import (
    CachedJobListFilterSchema,
    CachedJobManySchema,
    CachedJobSchema,
    CachedJobTriggerSchema,
    JobPageArgs,
    JobSchema,
    page_envelope,
    page_schema,
)
from api.transaction import request_session, request_work
from shared.engine import job_types
from shared.mentionlab import cached_jobs
from shared.mentionlab.models import CachedJob
from shared.models import Job

blp = Blueprint(
    "mentionlab-cached-jobs",
    __name__,
    url_prefix="/api/cached-jobs",
    description="Cached jobs (Mentionlab): one recurring execution plan per query. Each run "
    "of a plan is a job of that query; runs happen on POST /api/cached-jobs/trigger and on "
    "the project's recurrence (daily, weekly, biweekly, monthly; the first scheduled run is "
    "one interval after the recurrence is set, missed runs are not caught up).",
)
blp.before_request(authenticate_first)


@blp.route("/many")
class CachedJobsMany(MethodView):
    @create_endpoint(nest_envelope, creates_jobs=True)
    @project_headers
    @blp.arguments(CachedJobManySchema)
    @blp.response(201, CachedJobSchema(many=True))
    @blp.alt_response(404, description="A queryId is not a query of the project")
    @blp.alt_response(422, description="A provider is not configured, or a run is too large")
    def post(self, body: dict[str, Any]) -> list[CachedJob]:
        """Create many cached jobs for many queries

        One cached job per query of the project: posting a query that has one already
        updates its plan (aiModels, executionCount) and keeps its id, status and history;
        nothing is duplicated. `aiModels` are provider keys, answered as the concrete model
        ids they run as. A new cached job is `pending` (`inactive` when the project's
        recurrence is paused).
        """
        plans = [
            cached_jobs.CachedJobPlan(item["queryId"], item["aiModels"], item["executionCount"])
            for item in body["cachedJobs"]
        ]
        session = request_session()
        return cached_jobs.create_many(session, current_principal(), required_project_id(), plans)


@blp.route("/trigger")
class CachedJobsTrigger(MethodView):
    @create_endpoint(nest_envelope, creates_jobs=True)
    @project_headers
    @blp.arguments(CachedJobTriggerSchema)
    @blp.response(201, JobSchema(many=True))
    @blp.alt_response(
        422, description="The project has no cached job to run, or a provider is not configured"
    )
    def post(self, _body: dict[str, Any]) -> list[Job]:
        """Run all cached jobs of the project now

        Every cached job that is not `inactive` runs once: one job per cached job (of its
        query, models and executionCount), all accepted in one transaction. The cached jobs
        turn `active`, then `ended` when their job finishes.
        """
        work = request_work()
        jobs = cached_jobs.trigger_project(work, current_principal(), required_project_id())
        job_types.attach_owners(work.session, jobs)
        return jobs


@blp.route("/list")
class CachedJobList(MethodView):
    @project_headers
    @blp.arguments(JobPageArgs, location="query")
    @blp.arguments(CachedJobListFilterSchema)
    @blp.response(200, page_schema(CachedJobSchema))
    def post(self, paging: dict[str, Any], filters: dict[str, Any]) -> dict[str, Any]:
        """List the project's cached jobs (oldest first unless sorted)"""
        session = request_session()
        page = cached_jobs.list_cached_jobs(
            session,
            current_principal(),
            required_project_id(),
            sort=[(s["field"], s["direction"]) for s in filters["sort"]],
            limit=paging["limit"],
            page=paging["page"],
        )
        return page_envelope(page)


@blp.route("/<uuid:cached_job_id>")
class CachedJobById(MethodView):
    @context_headers
    @blp.response(200, CachedJobSchema)
    def get(self, cached_job_id: uuid.UUID) -> CachedJob:
        """Get one cached job"""
        session = request_session()
        return cached_jobs.get_cached_job(session, current_principal(), cached_job_id)
