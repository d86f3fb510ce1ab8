"""super.AI's request and answer shapes (field names as its API and Python client use
them: ``callbackUrl``, ``inputsFileUrl``, ``pending`` for the park flag, 0-based ``page``)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.mentionlab.schemas import MAX_LIST_VALUES, StrictBoolean, Text
from api.openapi import Answer
from api.params import UtcDateTime
from shared.ai_models import AI_MODELS
from shared.batches.inputs import check_inputs
from shared.batches.service import (
    DATA_POINT_SORTS,
    BatchState,
    DataPoint,
    DataPointState,
    batch_state,
)
from shared.models import utcnow
from shared.webhooks.messages import AttemptOutcome, attempt_error, attempt_outcome


def iso(value: Any) -> str | None:
    if value is None:
        return None
    text: str = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return text


# An absolute http(s) URL with a host and no credentials (what shared.netguard.check_syntax
# asks), in printable ASCII (IDNs punycoded, the rest percent-encoded), as a pattern the
# spec states and webargs checks first: ASCII classes only, so that Python's re and the
# ECMA regexes of the spec's readers agree on it.
HTTP_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=-]+(:[0-9]{1,5})?([/?#][!-~]*)?$"


# What CreateJobsSchema.one_source_of_inputs checks, as the spec says it.
ONE_SOURCE_OF_INPUTS = {
    "oneOf": [
        {"required": ["inputs"], "not": {"required": ["inputsFileUrl"]}},
        {"required": ["inputsFileUrl"], "not": {"required": ["inputs"]}},
    ]
}


class CreateJobsSchema(Schema):
    callbackUrl = Text(
        validate=[validate.Length(min=1, max=2048), validate.Regexp(HTTP_URL)],
        metadata={"description": "Where each data point's and the batch's results are POSTed"},
    )
    inputs = fields.Raw(
        metadata={
            "type": "array",
            "items": {"type": "object"},
            "minItems": 1,
            "description": "The inputs, one object each (the request is at most 4 MB)",
        }
    )
    inputsFileUrl = Text(
        validate=[validate.Length(min=1, max=2048), validate.Regexp(HTTP_URL)],
        metadata={
            "description": "A JSON array of input objects (at most 4 MB), fetched by the worker"
        },
    )
    metadata = fields.Dict(load_default=dict)
    tags = fields.List(
        Text(validate=validate.Length(min=1, max=255)),
        load_default=list,
        validate=validate.Length(max=100),
    )
    pending = StrictBoolean(
        load_default=False,
        metadata={
            "description": "true: the data points are parked (PENDING) until each is "
            "queued; by default they are queued at once"
        },
    )

    @validates_schema
    def one_source_of_inputs(self, data: dict[str, Any], **kwargs: Any) -> None:
        given = [name for name in ("inputs", "inputsFileUrl") if data.get(name) is not None]
        if len(given) != 1:
            raise ValidationError("give exactly one of inputs and inputsFileUrl", "inputs")
        if "inputs" in given:
            try:
                check_inputs(data["inputs"], "inputs")
            except ValueError as exc:
                raise ValidationError(str(exc), "inputs") from exc


def create_jobs_body() -> dict[str, Any]:
    """The documented body of ``POST /v1/apps/{appId}/jobs``: its fields, with exactly one
    source of inputs."""
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"allOf": [CreateJobsSchema, ONE_SOURCE_OF_INPUTS]}}
        },
    }


# What the answers' times, states and statuses are, as their specs say it.
INSTANT = {"type": "string", "format": "date-time"}
MAYBE_INSTANT = {**INSTANT, "nullable": True}
DATA_POINT_STATES = {"type": "string", "enum": [s.value for s in DataPointState]}


class CreatedSchema(Answer):
    optional = frozenset({"uuid"})

    message = fields.String()
    batchId = fields.UUID()
    uuid = fields.UUID(metadata={"description": "The data point's id, when there was one input"})


class ProcessorSchema(Schema):
    promptTemplate = Text(
        required=True,
        validate=validate.Length(min=1, max=100_000),
        metadata={
            "description": "Jinja2: each input's fields are variables; `input` is the whole object"
        },
    )
    model = fields.String(required=True, validate=validate.OneOf(AI_MODELS))
    webSearch = StrictBoolean(load_default=False)


class ProcessorAnswer(Answer, ProcessorSchema):
    """The processor as answered: every field, webSearch included."""


class ListJobsArgs(Schema):
    page = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))
    size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    sortBy = fields.String(load_default="id", validate=validate.OneOf(list(DATA_POINT_SORTS)))
    orderBy = fields.String(load_default="asc", validate=validate.OneOf(("asc", "desc")))
    createdStartDate = UtcDateTime()
    createdEndDate = UtcDateTime()
    statusIn = fields.List(
        fields.String(validate=validate.OneOf([s.value for s in DataPointState])),
        validate=validate.Length(max=MAX_LIST_VALUES),
    )


class PageArgs(Schema):
    page = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))
    size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


def _result(dp: DataPoint, key: str) -> Any:
    return (dp.execution.result or {}).get(key)


class DataPointSchema(Answer):
    id = fields.UUID(attribute="execution.id")
    uuid = fields.Function(lambda dp: str(dp.execution.id), metadata={"type": "string"})
    created = fields.Function(lambda dp: iso(dp.execution.created_at), metadata=INSTANT)
    completed = fields.Function(lambda dp: iso(dp.execution.finished_at), metadata=MAYBE_INSTANT)
    callbackUrl = fields.String(attribute="batch.callback_url", allow_none=True)
    appId = fields.UUID(attribute="batch.project_id")
    batchId = fields.UUID(attribute="batch.id")
    status = fields.Function(lambda dp: dp.state.value, metadata=DATA_POINT_STATES)
    input = fields.Function(
        lambda dp: (dp.execution.item or {}).get("input"),
        metadata={"type": "object", "nullable": True},
    )
    metadata = fields.Dict(attribute="batch.metadata_")
    tags = fields.List(fields.String(), attribute="batch.tags")
    error = fields.String(attribute="execution.error", allow_none=True)


class DataPointResponseSchema(Answer):
    id = fields.UUID(attribute="execution.id")
    uuid = fields.Function(lambda dp: str(dp.execution.id), metadata={"type": "string"})
    status = fields.Function(lambda dp: dp.state.value, metadata=DATA_POINT_STATES)
    response = fields.Function(
        lambda dp: _result(dp, "output"),
        metadata={
            "type": "string",
            "nullable": True,
            "description": "The processor's output; null until done",
        },
    )
    model = fields.Function(
        lambda dp: _result(dp, "servedModel"), metadata={"type": "string", "nullable": True}
    )
    usage = fields.Function(
        lambda dp: _result(dp, "usage"), metadata={"type": "object", "nullable": True}
    )
    cost = fields.Float(attribute="execution.cost")
    simulated = fields.Function(
        lambda dp: bool(_result(dp, "simulated")), metadata={"type": "boolean"}
    )
    error = fields.String(attribute="execution.error", allow_none=True)


class BatchSchema(Answer):
    id = fields.UUID()
    batchId = fields.Function(lambda job: str(job.id), metadata={"type": "string"})
    appId = fields.UUID(attribute="project_id")
    state = fields.Function(
        lambda j: batch_state(j).value,
        metadata={"type": "string", "enum": [s.value for s in BatchState]},
    )
    created = fields.Function(lambda j: iso(j.created_at), metadata=INSTANT)
    completed = fields.Function(lambda j: iso(j.finished_at), metadata=MAYBE_INSTANT)
    total = fields.Integer()
    pending = fields.Integer()
    retrying = fields.Integer()
    completedCount = fields.Integer(attribute="success")
    failedCount = fields.Integer(attribute="failed")
    callbackUrl = fields.String(attribute="callback_url", allow_none=True)
    metadata = fields.Dict(attribute="metadata_")
    tags = fields.List(fields.String())
    cost = fields.Float()
    error = fields.String(
        allow_none=True,
        metadata={"description": "Why the batch failed before it ran (its inputs file)"},
    )


def page_schema(item: type[Schema], key: str) -> type[Schema]:
    return Answer.from_dict(
        {
            key: fields.List(fields.Nested(item)),
            "page": fields.Integer(),
            "size": fields.Integer(),
            "pages": fields.Integer(),
            "total": fields.Integer(),
        },
        name=f"{item.__name__.removesuffix('Schema')}Page",
    )


DELIVERIES_LIMIT = 100  # callbacks per page of a delivery log, unless asked otherwise
DELIVERIES_MAX_LIMIT = 500


class DeliveriesArgs(Schema):
    """A page of a delivery log: unknown parameters are refused (see the routes)."""

    limit = fields.Integer(
        load_default=DELIVERIES_LIMIT,
        validate=validate.Range(min=1, max=DELIVERIES_MAX_LIMIT),
        metadata={
            "description": f"Callbacks per page: 1-{DELIVERIES_MAX_LIMIT}, "
            f"default {DELIVERIES_LIMIT}"
        },
    )
    cursor = Text(
        validate=validate.Length(min=1, max=1000),
        metadata={
            "description": "Where the page starts: the opaque cursor of the previous "
            'page\'s `Link: <...>; rel="next"` header (absent at the end). Without it, '
            "the first page"
        },
    )


NEXT_PAGE_HEADERS = {
    "Link": {
        "description": 'The next page, `<path?limit=...&cursor=...>; rel="next"` (RFC '
        "8288), absent on the last page. Pages are keyed on each callback's creation "
        "(time, id): they neither skip nor repeat a callback while others are being added",
        "schema": {"type": "string"},
    }
}


class AttemptSchema(Answer):
    attempt = fields.Integer(metadata={"description": "1, 2, ... per callback"})
    attemptedAt = fields.Function(
        lambda d: iso(d.attempted_at),
        metadata={**INSTANT, "description": "When the request was about to leave"},
    )
    url = fields.String()
    outcome = fields.Function(
        lambda d: attempt_outcome(d, utcnow()).value,
        metadata={
            "type": "string",
            "enum": [o.value for o in AttemptOutcome],
            "description": "answered (statusCode); error (no answer: error says why); "
            "sending (under way: an attempt is logged before its request leaves); unknown "
            "(its sender stopped before recording the outcome: the receiver may have got "
            "the request; the retry is the next attempt)",
        },
    )
    completedAt = fields.Function(
        lambda d: iso(d.completed_at),
        metadata={**MAYBE_INSTANT, "description": "When the outcome was recorded"},
    )
    statusCode = fields.Integer(attribute="status_code", allow_none=True)
    responseBody = fields.String(
        attribute="response_body",
        allow_none=True,
        metadata={"description": "The first KB of what the receiver answered"},
    )
    error = fields.Function(
        lambda d: attempt_error(d, utcnow()),
        metadata={
            "type": "string",
            "nullable": True,
            "description": "Why there was no answer, or why the outcome is unknown",
        },
    )
    latencyMs = fields.Integer(attribute="latency_ms", allow_none=True)


class DeliverySchema(Answer):
    """A callback message (its ``id`` is the ``webhook-id`` header) and every attempt."""

    id = fields.UUID(attribute="message.id")
    event = fields.String(attribute="message.event")
    url = fields.String(attribute="message.url")
    state = fields.String(
        attribute="message.state",
        metadata={"enum": ["sending", "delivered", "failed", "gone"]},
    )
    payload = fields.Dict(attribute="message.payload")
    attempts = fields.List(fields.Nested(AttemptSchema))
    nextAttemptAt = fields.Function(
        lambda log: iso(log.message.next_attempt_at) if log.message.state == "sending" else None,
        metadata=MAYBE_INSTANT,
    )
    created = fields.Function(lambda log: iso(log.message.created_at), metadata=INSTANT)


class ResendFailedSchema(Schema):
    since = UtcDateTime(
        required=True,
        metadata={"description": "Resend the batch's failed callbacks created since then"},
    )


class SecretSchema(Answer):
    secret = fields.String(
        metadata={"description": "whsec_…: shown this once; verify deliveries with it"}
    )
    createdAt = fields.String(metadata={"format": "date-time"})
    previousSecretsExpireAt = fields.String(
        allow_none=True,
        metadata={
            "format": "date-time",
            "description": "Until then deliveries are also signed by the previous secret",
        },
    )


ResentSchema = Answer.from_dict({"resent": fields.Integer()}, name="Resent")
