"""Valpay's request and answer shapes. Job timestamps are Unix milliseconds, as the list's
``dateFrom``/``dateTo`` filters are."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.openapi import Answer
from shared import instants
from shared.engine import job_types
from shared.engine.jobs import JOB_SORTS
from shared.models import JobStatus

# Every installed job type (discovered: shared.engine.job_types) and what its executions
# produce: the list's jobType and resultType filters.
RESULT_TYPES = {spec.name: spec.result_type for spec in job_types.installed()}
# The job types this API creates, and the payload each takes.
PAYLOAD_SCHEMAS: dict[str, type[Schema]] = {
    spec.name: schema
    for spec in job_types.installed()
    if spec.create is not None and (schema := job_types.payload_schema_for(spec)) is not None
}
CREATABLE = tuple(PAYLOAD_SCHEMAS)
MAX_MS = instants.MAX_UNIX_MS  # 9999-12-31T23:59:59.999Z: beyond it, no datetime exists


def millis(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


class ListJobsArgs(Schema):
    limit = fields.Integer(
        required=True,
        strict=False,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "Number of items to return (1-100)"},
    )
    lastEvaluatedKey = fields.String(
        validate=validate.Length(min=1, max=1000),
        metadata={
            "description": "Cursor for pagination: the exact base64 token from the previous "
            "response (absent there at the end)"
        },
    )
    jobType = fields.String(validate=validate.OneOf(list(RESULT_TYPES)))
    status = fields.String(validate=validate.OneOf([s.value for s in JobStatus]))
    resultType = fields.String(validate=validate.OneOf(sorted(set(RESULT_TYPES.values()))))
    dateFrom = fields.Integer(
        validate=validate.Range(min=0, max=MAX_MS),
        metadata={"description": "Jobs created from this Unix time in milliseconds"},
    )
    dateTo = fields.Integer(
        validate=validate.Range(min=0, max=MAX_MS),
        metadata={"description": "Jobs created until this Unix time in milliseconds"},
    )
    sortBy = fields.String(load_default="createdAt", validate=validate.OneOf(list(JOB_SORTS)))
    sortOrder = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))

    @validates_schema
    def dates_in_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "dateFrom" in data and "dateTo" in data and data["dateFrom"] > data["dateTo"]:
            raise ValidationError("dateFrom must not be after dateTo", "dateTo")


class CreateJobSchema(Schema):
    jobType = fields.String(
        required=True,
        validate=validate.OneOf(CREATABLE),
        metadata={"description": "The type of job to create"},
    )
    payload = fields.Dict(
        required=True,
        metadata={
            "description": "The job payload, as its job type takes it: for ai_queries, "
            "{projectId, aiModels, executionCount} as the Mentionlab trigger takes them; for "
            "batch, a batch's fields and appId; for kb_sync, {jobName}: a run of that sync "
            "job, now; an installed job type documents its own"
        },
    )

    @validates_schema
    def payload_fits_its_type(self, data: dict[str, Any], **kwargs: Any) -> None:
        schema = PAYLOAD_SCHEMAS.get(data.get("jobType", ""))
        if schema is None or not isinstance(data.get("payload"), dict):
            return
        errors = schema().validate(data["payload"])
        if errors:
            raise ValidationError({"payload": errors})


class RetryJobSchema(Schema):
    executionIds = fields.List(
        fields.UUID(),
        validate=validate.Length(min=1, max=1000),
        metadata={
            "description": "Only these failed executions of the job (default: every failed "
            "one, except those canceled one by one)"
        },
    )


def create_job_body() -> dict[str, Any]:
    """The documented request body of ``POST /v1/jobs``: one object per job type, whose
    ``payload`` is that type's (what :class:`CreateJobSchema` checks; a ``fields.Dict``
    alone would document any object as valid for every type)."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "properties": {
                                "jobType": {"type": "string", "enum": [job_type]},
                                "payload": getattr(PAYLOAD_SCHEMAS[job_type], "openapi_doc", None)
                                or PAYLOAD_SCHEMAS[job_type],
                            },
                            "required": ["jobType", "payload"],
                            "additionalProperties": False,
                        }
                        for job_type in CREATABLE
                    ]
                }
            }
        },
    }


class ProgressSchema(Answer):
    total = fields.Integer()
    pending = fields.Integer()
    retrying = fields.Integer()
    success = fields.Integer()
    failed = fields.Integer()


class OwnCounters(fields.Nested):
    """The object's own counters, as a nested object (``progress``)."""

    def get_value(self, obj: Any, attr: str, accessor: Any = None, default: Any = None) -> Any:
        return obj


class JobSchema(Answer):
    jobId = fields.UUID(attribute="id")
    jobType = fields.String(attribute="type", metadata={"enum": list(RESULT_TYPES)})
    status = fields.String(metadata={"enum": [s.value for s in JobStatus]})
    resultType = fields.Function(
        lambda job: RESULT_TYPES.get(job.type, "items"),
        metadata={"type": "string", "enum": sorted(set(RESULT_TYPES.values()))},
    )
    payload = fields.Dict(metadata={"description": "What the job was created with"})
    progress = OwnCounters(ProgressSchema)
    cost = fields.Float(metadata={"description": "USD spent on the job's calls so far"})
    # What the job belongs to in its type's own terms (a run's project, a batch's app):
    # read from the type's tables by job_types.attach_owners.
    projectId = fields.UUID(attribute="owner_id", allow_none=True)
    createdAt = fields.Function(lambda job: millis(job.created_at), metadata={"type": "integer"})
    updatedAt = fields.Function(lambda job: millis(job.updated_at), metadata={"type": "integer"})
    startedAt = fields.Function(
        lambda job: millis(job.started_at), metadata={"type": "integer", "nullable": True}
    )
    finishedAt = fields.Function(
        lambda job: millis(job.finished_at), metadata={"type": "integer", "nullable": True}
    )


def answer_schema(data: type[Schema] | Schema, name: str) -> type[Schema]:
    """The documented ``{success, data, message}`` answer around ``data``."""
    return Answer.from_dict(
        {
            "success": fields.Boolean(metadata={"enum": [True]}),
            "data": fields.Nested(data),
            "message": fields.String(),
        },
        name=name,
    )


class JobListData(Answer):
    optional = frozenset({"lastEvaluatedKey"})

    jobs = fields.List(fields.Nested(JobSchema))
    count = fields.Integer()
    lastEvaluatedKey = fields.String(
        metadata={"description": "Pass it back for the next page; absent at the end"}
    )


JobAnswer = answer_schema(JobSchema, "JobAnswer")
JobListAnswer = answer_schema(JobListData, "JobListAnswer")
