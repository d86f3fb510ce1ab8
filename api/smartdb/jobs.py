"""``/jobs``: sync jobs, as Smart DB's seed documents ``POST /jobs/create``, and the rest
of their life (list, read, delete, pause, resume, run now, history, retry a failed run)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from api.auth import authenticate_request, current_principal
from api.idempotency import create_endpoint
from api.params import path_uuid
from api.smartdb import schemas
from api.smartdb.envelope import documents_check_refusals, error_envelope, ok
from api.transaction import request_session, request_work
from shared.kb import sync
from shared.kb.models import KnowledgeBase, SyncJob, SyncRun
from shared.kb.reading import decode
from shared.kb.schedule import FORMATS

blp = Blueprint("smartdb-jobs", __name__, url_prefix="/jobs", description="Sync jobs")


@blp.before_request
def authenticate_first() -> None:
    authenticate_request()


def _required(name: str) -> dict[str, str]:
    return {"required": f"{name} is required", "null": f"{name} is required"}


def _text(name: str, description: str, **kwargs: Any) -> fields.String:
    return fields.String(
        required=True,
        error_messages={**_required(name), "invalid": f"{name} must be a string"},
        validate=validate.Length(
            min=1, max=kwargs.pop("max", 255), error=f"{name} is empty or too long"
        ),
        metadata={"description": description},
        **kwargs,
    )


def _error_lines(messages: Any, prefix: str = "") -> list[str]:
    """Marshmallow's nested messages as the seed's flat details ("job_name is required")."""
    if isinstance(messages, dict):
        return [
            line
            for key, value in messages.items()
            for line in _error_lines(value, key if not prefix else f"{prefix}[{key}]")
        ]
    if isinstance(messages, list):
        return [line for m in messages for line in _error_lines(m, prefix)]
    text = str(messages)
    if text == "Unknown field.":
        return [f"{prefix} is not a field of a job"]
    if prefix and not text.startswith(prefix.split("[")[0]):
        return [f"{prefix}: {text}"]
    return [text]


class CreateSyncJobSchema(Schema):
    """The seed's request body; every field is required."""

    job_name = _text("job_name", "Unique identifier for the job (letters, digits, _)", max=63)
    source_table = _text("source_table", "Source table in format database.table", max=127)
    kb_name = _text("kb_name", "Target knowledge base name", max=63)
    content_columns = fields.List(
        fields.String(validate=validate.Length(min=1, max=63)),
        required=True,
        error_messages={
            **_required("content_columns"),
            "invalid": "content_columns must be an array of strings",
        },
        validate=validate.Length(
            min=1, max=100, error="content_columns must name 1 to 100 columns"
        ),
        metadata={"description": "Columns to include in the sync"},
    )
    filter_column = _text("filter_column", "Column used for filtering data", max=63)
    interval = _text("interval", f"Sync frequency: {FORMATS}; at least 1 minute", max=40)
    start_time = _text("start_time", "Job start time in ISO format (naive = UTC)", max=64)
    end_time = _text("end_time", "Job end time in ISO format; at most 30 days after start", max=64)

    def handle_error(self, error: ValidationError, data: Any, *, many: bool, **kwargs: Any) -> None:
        """Every problem at once, in the seed's shape: the fields that are missing or
        malformed, and the interval and times that are present but unusable."""
        problems = sync.Problems()
        for line in _error_lines(error.messages):
            problems.add("INVALID_REQUEST", line)
        if isinstance(data, dict):
            sync.check_schedule(data, problems)
        problems.raise_if_any()
        raise error


def instant(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def next_run(session: Any, job: SyncJob) -> str | None:
    return instant(sync.next_run_at(session, job))


def history_entry(run: SyncRun) -> dict[str, Any]:
    return {
        "job_id": str(run.job_id),
        "trigger": run.trigger,
        "slot": instant(run.slot_at),
        "status": run.status,
        "run_start": instant(run.run_start),
        "run_end": instant(run.run_end),
        "rows_read": run.rows_read,
        "rows_written": run.rows_written,
        "rows_without_filter_value": run.rows_without_filter_value,
        "error": run.error,
    }


def synced_up_to(value: Any) -> Any:
    """The watermark's filter value, as JSON (times in ISO)."""
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if isoformat is not None else value


def describe(session: Any, job: SyncJob) -> dict[str, Any]:
    kb = session.get(KnowledgeBase, job.kb_id)
    last = sync.last_run(session, job.id)
    watermark = decode(job.watermark["value"]) if job.watermark else None
    return {
        "job_id": str(job.id),
        "job_name": job.name,
        "source_table": job.source_table,
        "kb_name": kb.name if kb is not None else None,
        "content_columns": job.content_columns,
        "filter_column": job.filter_column,
        "interval": job.interval,
        "start_time": instant(job.start_time),
        "end_time": instant(job.end_time),
        "status": job.status,
        "running": last is not None and last.status == sync.RUNNING,
        "created_at": instant(job.created_at),
        "next_run": next_run(session, job),
        "synced_up_to": synced_up_to(watermark),
        "last_run": history_entry(last) if last is not None else None,
    }


class HistoryArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


@blp.route("/create")
class CreateJob(MethodView):
    @create_endpoint(error_envelope)
    @blp.arguments(CreateSyncJobSchema)
    @blp.response(201, schemas.SyncJobCreatedAnswer)
    @blp.alt_response(
        400,
        description="INVALID_REQUEST, DUPLICATE_JOB, INVALID_TABLE, INVALID_KB, "
        "INVALID_INTERVAL, INVALID_DATETIME or LIMIT_EXCEEDED, with every problem in details",
    )
    @documents_check_refusals(blp)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a scheduled job syncing a source table into a knowledge base"""
        problems = sync.Problems()
        window = sync.check_schedule(body, problems)
        problems.raise_if_any()
        assert window is not None
        session = request_session()
        job = sync.create_sync_job(session, current_principal().organisation_id, body, window)
        data = {
            "job_id": str(job.id),
            "job_name": job.name,
            "status": job.status,
            "created_at": instant(job.created_at),
            "next_run": next_run(session, job),
        }
        return ok(data, "Job created successfully")


@blp.route("")
class Jobs(MethodView):
    @blp.response(200, schemas.SyncJobListAnswer)
    def get(self) -> dict[str, Any]:
        """List the sync jobs"""
        session = request_session()
        jobs = sync.list_sync_jobs(session, current_principal().organisation_id)
        return ok([describe(session, j) for j in jobs], "Jobs retrieved successfully")


@blp.route("/<name>")
class JobByName(MethodView):
    @blp.response(200, schemas.SyncJobAnswer)
    def get(self, name: str) -> dict[str, Any]:
        """One sync job, with its last run"""
        session = request_session()
        job = sync.get_sync_job(session, current_principal().organisation_id, name)
        return ok(describe(session, job), "Job retrieved successfully")

    @blp.response(200, schemas.SyncJobDeletedAnswer)
    def delete(self, name: str) -> dict[str, Any]:
        """Delete a sync job and its history (a run going now is canceled)"""
        sync.delete(request_work(), current_principal().organisation_id, name)
        return ok({"job_name": name}, "Job deleted successfully")


def _after(name: str, message: str) -> dict[str, Any]:
    session = request_session()
    job = sync.get_sync_job(session, current_principal().organisation_id, name)
    return ok(describe(session, job), message)


@blp.route("/<name>/pause")
class PauseJob(MethodView):
    @blp.response(200, schemas.SyncJobAnswer)
    @blp.alt_response(409, description="CONFLICT: the job has completed")
    def post(self, name: str) -> dict[str, Any]:
        """Pause: no slot runs until resumed"""
        sync.pause(request_session(), current_principal().organisation_id, name)
        return _after(name, "Job paused successfully")


@blp.route("/<name>/resume")
class ResumeJob(MethodView):
    @blp.response(200, schemas.SyncJobAnswer)
    @blp.alt_response(409, description="CONFLICT: the job has completed")
    def post(self, name: str) -> dict[str, Any]:
        """Resume from the next slot (missed slots are not caught up)"""
        sync.resume(request_session(), current_principal().organisation_id, name)
        return _after(name, "Job resumed successfully")


@blp.route("/<name>/run")
class RunJob(MethodView):
    @create_endpoint(error_envelope, creates_jobs=True)
    @blp.response(202, schemas.RunStartedAnswer)
    @blp.alt_response(409, description="RUN_IN_PROGRESS: the job's run is going")
    def post(self, name: str) -> dict[str, Any]:
        """Run now, outside the schedule (the slots stay as they are)"""
        run_id = sync.run_now(request_work(), current_principal().organisation_id, name)
        session = request_session()
        job = sync.get_sync_job(session, current_principal().organisation_id, name)
        data = describe(session, job)
        data["run_job_id"] = str(run_id)
        return ok(data, "Job run started")


@blp.route("/<name>/history")
class JobHistory(MethodView):
    @blp.arguments(HistoryArgs, location="query")
    @blp.response(200, schemas.HistoryAnswer)
    def get(self, args: dict[str, Any], name: str) -> dict[str, Any]:
        """The job's runs, newest first: run_start, run_end, rows_read, rows_written, error"""
        session = request_session()
        job = sync.get_sync_job(session, current_principal().organisation_id, name)
        runs = sync.runs_of(session, job.id, args["limit"])
        return ok([history_entry(r) for r in runs], "History retrieved successfully")


@blp.route("/<name>/history/<run>/retry")
class RetryRun(MethodView):
    @create_endpoint(error_envelope, creates_jobs=True)
    @blp.response(202, schemas.RunStartedAnswer)
    @blp.alt_response(404, description="NOT_FOUND: no such job, or the run is not one of its")
    @blp.alt_response(
        409,
        description="RUN_IN_PROGRESS: a run is going; CONFLICT: the run did not fail, or "
        "NOT_LATEST_RUN: a later run has read on from it",
    )
    def post(self, name: str, run: str) -> dict[str, Any]:
        """Run a failed run's failed batches again (its latest run; `run` is the run's
        job_id in the history)

        The run is running again (its history entry too) and ends again; the batches that
        succeeded are not read again. Counts against the organisation's quotas.
        """
        organisation_id = current_principal().organisation_id
        run_id = path_uuid(run, "run")
        sync.retry_run(request_work(), organisation_id, name, run_id)
        session = request_session()
        data = describe(session, sync.get_sync_job(session, organisation_id, name))
        data["run_job_id"] = str(run_id)
        return ok(data, "Run retried")
