"""super.AI's request and answer shapes (field names as its API and Python client use
them: ``callbackUrl``, ``inputsFileUrl``, ``pending`` for the park flag, 0-based ``page``)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_dump, validate, validates_schema

from api.mentionlab.schemas import MAX_LIST_VALUES, StrictBoolean, Text
from api.openapi import Answer
from api.params import UtcDateTime
from shared.ai_models import AI_MODELS
from shared.batches.inputs import check_inputs
from shared.batches.responses import data_point_response
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


OBJECT_OR_ARRAY = {"oneOf": [{"type": "object"}, {"type": "array", "items": {}}]}


class ObjectOrArray(fields.Field):
    """A JSON object or array, kept as given: super.AI's ``metadata`` (its docs type it as
    an array of key-value pairs, its Python client sends an object)."""

    default_error_messages = {"invalid": "Not a valid object or array."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs["metadata"] = {**OBJECT_OR_ARRAY, **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict | list):
            raise self.make_error("invalid")
        return value


class NotSupported(fields.Field):
    """A field super.AI's client may send that means nothing here: refused, by name."""

    def __init__(self, why: str, **kwargs: Any) -> None:
        self.why = why
        super().__init__(
            metadata={"description": f"Not supported: a request with it is refused (400). {why}"},
            **kwargs,
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        raise ValidationError(f"not supported: {self.why}")


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
        metadata={
            "description": "Where each data point's result and then the batch's end are "
            "POSTed, signed (see this operation's callbacks)"
        },
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
    metadata = ObjectOrArray(
        load_default=dict,
        metadata={
            "description": "Your own key-value pairs, kept with the batch and shown on each "
            "of its data points: an object, or an array"
        },
    )
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
    # What the official client sends for create_jobs(worker=...).
    labeler = NotSupported(
        "every input goes through the app's processor (PUT /v1/apps/{appId}/processor); "
        "there is no labeler to choose"
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
    completedStartDate = UtcDateTime(
        metadata={"description": "Data points finished (completed, failed or canceled) since"}
    )
    completedEndDate = UtcDateTime(
        metadata={"description": "Data points finished (completed, failed or canceled) until"}
    )
    statusIn = fields.List(
        fields.String(validate=validate.OneOf([s.value for s in DataPointState])),
        validate=validate.Length(max=MAX_LIST_VALUES),
    )


class PageArgs(Schema):
    page = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))
    size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class DataPointSchema(Answer):
    id = fields.UUID(attribute="execution.id")
    uuid = fields.Function(lambda dp: str(dp.execution.id), metadata={"type": "string"})
    created = fields.Function(lambda dp: iso(dp.execution.created_at), metadata=INSTANT)
    completed = fields.Function(lambda dp: iso(dp.execution.finished_at), metadata=MAYBE_INSTANT)
    # The batch's own row (shared.batches.models.Batch), which the service attaches.
    callbackUrl = fields.String(attribute="batch.batch_row.callback_url", allow_none=True)
    appId = fields.UUID(attribute="batch.batch_row.app_id")
    batchId = fields.UUID(attribute="batch.id")
    status = fields.Function(lambda dp: dp.state.value, metadata=DATA_POINT_STATES)
    input = fields.Function(
        lambda dp: (dp.execution.item or {}).get("input"),
        metadata={"type": "object", "nullable": True},
    )
    metadata = fields.Raw(attribute="batch.metadata_", metadata=OBJECT_OR_ARRAY)
    tags = fields.List(fields.String(), attribute="batch.tags")
    error = fields.String(attribute="execution.error", allow_none=True)


class DataPointResponseSchema(Answer):
    """What ``.../jobs/{id}/response`` answers, and a data point's callback carries as its
    ``response`` (both made by :func:`shared.batches.responses.data_point_response`)."""

    id = fields.UUID(required=True)
    uuid = fields.String(required=True)
    status = fields.String(required=True, metadata=DATA_POINT_STATES)
    response = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The processor's output; null until done"},
    )
    model = fields.String(required=True, allow_none=True)
    usage = fields.Dict(required=True, allow_none=True)
    cost = fields.Float(required=True)
    simulated = fields.Boolean(required=True)
    error = fields.String(required=True, allow_none=True)
    review = fields.Dict(
        required=True,
        allow_none=True,
        metadata={
            "properties": {
                "correct": {"type": "boolean"},
                "response": {
                    "description": "The response it should have been (any JSON value)",
                    "nullable": True,
                    "anyOf": [
                        {"type": "string"},
                        {"type": "number"},
                        {"type": "boolean"},
                        {"type": "object"},
                        {"type": "array", "items": {}},
                    ],
                },
                "reviewedAt": {"type": "string"},
            },
            "description": "A person's review (PATCH /v1/jobs/{id}/review); null without one",
        },
    )

    @pre_dump
    def of_data_point(self, data_point: DataPoint, **kwargs: Any) -> dict[str, Any]:
        return data_point_response(data_point.execution)


class RetryBatchSchema(Schema):
    jobIds = fields.List(
        fields.UUID(),
        validate=validate.Length(min=1, max=1000),
        metadata={
            "description": "Only these failed data points (jobs) of the batch (default: every "
            "failed one, except those canceled one by one)"
        },
    )


class ReviewSchema(Schema):
    """A review of a finished data point, as the super.AI client's ``review_job`` sends it."""

    response = fields.Raw(
        allow_none=True,
        metadata={"description": "The response it should have been (the output is kept)"},
    )
    correct = StrictBoolean(metadata={"description": "Whether its response is correct"})

    @validates_schema
    def says_something(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "response" not in data and "correct" not in data:
            raise ValidationError("give response, correct or both", "response")


class BatchSchema(Answer):
    id = fields.UUID()
    batchId = fields.Function(lambda job: str(job.id), metadata={"type": "string"})
    appId = fields.UUID(attribute="batch_row.app_id")
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
    callbackUrl = fields.String(attribute="batch_row.callback_url", allow_none=True)
    metadata = fields.Raw(attribute="metadata_", metadata=OBJECT_OR_ARRAY)
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
    payload = fields.Dict(
        attribute="message.payload",
        metadata={"description": "The body sent (see the callbacks of POST .../jobs)"},
    )
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
        required=True,
        metadata={
            "description": "whsec_…: every callback is signed with it (Standard Webhooks); "
            "GET /v1/webhooks/secret shows it again"
        },
    )
    createdAt = fields.String(required=True, metadata={"format": "date-time"})
    previousSecretsExpireAt = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "format": "date-time",
            "description": "Until then callbacks are also signed by the previous secret(s) "
            "(null: no previous secret signs)",
        },
    )


ResentSchema = Answer.from_dict({"resent": fields.Integer()}, name="Resent")
