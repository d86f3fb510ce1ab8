"""``/v1/jobs``: list (cursor pages), create and get the caller's jobs of every type.

A job belongs to the organisation of the JWT's user: every user of an organisation sees
its jobs, another organisation's are 404 and absent from lists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import authenticate_request, current_principal
from api.idempotency import create_endpoint
from api.params import path_uuid
from api.transaction import request_session, request_work
from api.valpay import schemas
from api.valpay.envelope import error_envelope, ok
from shared import instants
from shared.engine import job_types
from shared.engine import jobs as engine_jobs
from shared.engine.job_types import attach_owners
from shared.engine.retry import retry_failed

blp = Blueprint("valpay-jobs", __name__, url_prefix="/v1/jobs", description="Jobs (Valpay)")


@blp.before_request
def authenticate_first() -> None:
    authenticate_request()


def _when(ms: int | None) -> datetime | None:
    # Within the schema's range (0 to instants.MAX_UNIX_MS): always an instant.
    return None if ms is None else instants.from_unix_ms(ms)


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(schemas.ListJobsArgs, location="query")
    @blp.response(200, schemas.JobListAnswer)
    @blp.alt_response(400, description="Bad request - Invalid query parameters")
    @blp.alt_response(401, description="Unauthorized - Invalid or missing authentication")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Get all jobs for the authenticated user"""
        job_types = None
        if "jobType" in args:
            job_types = [args["jobType"]]
        if "resultType" in args:
            kinds = [t for t, kind in schemas.RESULT_TYPES.items() if kind == args["resultType"]]
            job_types = [t for t in (job_types or kinds) if t in kinds]
        session = request_session()
        page = engine_jobs.browse_jobs(
            session,
            current_principal().organisation_id,
            job_types=job_types,
            status=args.get("status"),
            created_from=_when(args.get("dateFrom")),
            created_to=_when(args.get("dateTo")),
            sort=args["sortBy"],
            descending=args["sortOrder"] == "desc",
            cursor=args.get("lastEvaluatedKey"),
            limit=args["limit"],
        )
        attach_owners(session, page.items)
        data: dict[str, Any] = {"jobs": page.items, "count": len(page.items)}
        if page.next_cursor is not None:
            data["lastEvaluatedKey"] = page.next_cursor
        return ok(data, "Jobs retrieved successfully")

    @create_endpoint(error_envelope, creates_jobs=True)
    @blp.arguments(schemas.CreateJobSchema)
    @blp.doc(requestBody=schemas.create_job_body())
    @blp.response(201, schemas.JobAnswer)
    @blp.alt_response(400, description="Bad request - Invalid input data")
    @blp.alt_response(401, description="Unauthorized - Invalid or missing authentication")
    @blp.alt_response(404, description="The payload's project, app or sync job is not the caller's")
    @blp.alt_response(409, description="kb_sync: the sync job's run is still going")
    @blp.alt_response(
        422, description="The project has no queries, or a model's provider is not configured"
    )
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a new job"""
        spec = job_types.spec_for(body["jobType"])  # one of schemas.CREATABLE: validated
        payload = schemas.PAYLOAD_SCHEMAS[spec.name]().load(body["payload"])
        assert spec.create is not None
        work = request_work()
        job = spec.create(work, current_principal(), payload)
        attach_owners(work.session, [job])
        return ok(job, "Job created successfully")


@blp.route("/<job_id>")
class JobById(MethodView):
    @blp.response(200, schemas.JobAnswer)
    @blp.alt_response(401, description="Unauthorized - Invalid or missing authentication")
    @blp.alt_response(404, description="Job not found or does not belong to the authenticated user")
    def get(self, job_id: str) -> dict[str, Any]:
        """Get a specific job by ID"""
        session = request_session()
        job = engine_jobs.get_job(
            session, current_principal().organisation_id, path_uuid(job_id, "Job")
        )
        attach_owners(session, [job])
        return ok(job, "Job retrieved successfully")


@blp.route("/<job_id>/retry")
class RetryJob(MethodView):
    @create_endpoint(error_envelope, creates_jobs=True)
    @blp.arguments(schemas.RetryJobSchema, required=False)
    @blp.response(200, schemas.JobAnswer)
    @blp.alt_response(400, description="Bad request - Invalid input data")
    @blp.alt_response(401, description="Unauthorized - Invalid or missing authentication")
    @blp.alt_response(
        404, description="Job not found, or a named execution is not one of the job's"
    )
    @blp.alt_response(
        409,
        description="The job has not finished (or runs again after a retry), was canceled, "
        "or has nothing failed to retry (a named execution did not fail)",
    )
    def post(self, body: dict[str, Any], job_id: str) -> dict[str, Any]:
        """Run a finished job's failed executions again

        Every failed execution (or only `executionIds`) goes back to pending with a fresh
        attempt budget; the job is processing again and finishes again. A canceled job is
        not retried. Counts against the organisation's quotas like new work.
        """
        work = request_work()
        job = retry_failed(
            work,
            current_principal().organisation_id,
            path_uuid(job_id, "Job"),
            execution_ids=(body or {}).get("executionIds"),
        )
        attach_owners(work.session, [job])
        return ok(job, "Job retried successfully")
