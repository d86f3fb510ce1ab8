"""Marshmallow schemas of the Mentionlab-compatible family (camelCase on the wire)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from shared.ai_models import AI_MODELS, PROVIDERS
from shared.mentionlab.cached_jobs import effective_status
from shared.paging import Page

RECURRENCES = ("manual", "daily", "weekly", "biweekly", "monthly")
RECURRENCE_STATUSES = ("active", "paused")
DIRECTIONS = ("ASC", "DESC")
MAX_PAGE = 2**31 - 1
# Every list a request may send is capped (a longer one is a 400), well above any real
# use: a sort names each of its few fields once (SQLite refuses an ORDER BY of over 2,000
# terms, which was a 500); model lists and filters name a few values each.
MAX_SORT_TERMS = 10
MAX_LIST_VALUES = 100


class IsoDateTime(fields.Field):
    """``2026-06-08T12:00:00.000Z``: UTC with milliseconds, as Mentionlab writes them."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise ValidationError("Not a datetime")
        return (
            value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{value.microsecond // 1000:03d}Z"
        )


class Text(fields.String):
    """Free text PostgreSQL can store: NUL characters and lone surrogates are a 400, not a 500."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("Not valid Unicode text.") from None
        return text


def strict_int(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=True, **kwargs)


class StrictBoolean(fields.Boolean):
    """JSON ``true``/``false`` only: not "true", 1 or 0 (which marshmallow would coerce)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class SortSchema(Schema):
    direction = fields.String(load_default="DESC", validate=validate.OneOf(DIRECTIONS))


# ----------------------------------------------------------------------------- projects


class ProjectFieldsSchema(Schema):
    """The writable fields of a project; every one optional (PATCH)."""

    name = Text(validate=validate.Length(min=1, max=255))
    description = Text(validate=validate.Length(max=10_000))
    website = Text(validate=validate.Length(max=2048))
    industry = Text(validate=validate.Length(max=255))
    name_aliases = fields.List(
        Text(validate=validate.Length(min=1, max=255)),
        data_key="nameAliases",
        validate=validate.Length(max=100),
    )
    competitors = fields.List(
        Text(validate=validate.Length(min=1, max=255)), validate=validate.Length(max=100)
    )
    llm_providers = fields.List(
        fields.String(validate=validate.OneOf(AI_MODELS)),
        data_key="llmProviders",
        validate=validate.Length(max=MAX_LIST_VALUES),
    )
    execution_count = strict_int(data_key="executionCount", validate=validate.Range(min=1, max=100))
    recurrence = fields.String(validate=validate.OneOf(RECURRENCES))
    recurrence_status = fields.String(
        data_key="recurrenceStatus", validate=validate.OneOf(RECURRENCE_STATUSES)
    )
    web_search = StrictBoolean(
        data_key="webSearch",
        allow_none=True,
        metadata={
            "description": "Ask each model with its web search, in the query's country "
            "(false: the bare model; null: the provider's default, on where it has one)"
        },
    )


class ProjectCreateSchema(ProjectFieldsSchema):
    name = Text(required=True, validate=validate.Length(min=1, max=255))


class ProjectSchema(Schema):
    id = fields.UUID(dump_only=True)
    organisation = fields.UUID(attribute="organisation_id", dump_only=True)
    name = fields.String()
    description = fields.String()
    website = fields.String()
    industry = fields.String()
    nameAliases = fields.List(fields.String(), attribute="name_aliases")
    competitors = fields.List(fields.String())
    llmProviders = fields.List(fields.String(), attribute="llm_providers")
    executionCount = fields.Integer(attribute="execution_count")
    recurrence = fields.String()
    recurrenceStatus = fields.String(attribute="recurrence_status")
    webSearch = fields.Boolean(attribute="web_search", allow_none=True)
    createdAt = IsoDateTime(attribute="created_at")
    updatedAt = IsoDateTime(attribute="updated_at")


# ------------------------------------------------------------------------------ queries


class QueryCreateSchema(Schema):
    query = Text(required=True, validate=validate.Length(min=1, max=2000))
    language = Text(load_default="en", validate=validate.Length(min=2, max=5))
    country = Text(load_default="US", validate=validate.Length(equal=2))
    tag_ids = fields.List(
        fields.UUID(),
        data_key="tagIds",
        load_default=list,
        validate=validate.Length(max=MAX_LIST_VALUES),
    )


class QueryManySchema(Schema):
    queries = fields.List(
        fields.Nested(QueryCreateSchema), required=True, validate=validate.Length(min=1, max=1000)
    )


class QuerySchema(Schema):
    id = fields.UUID()
    project = fields.UUID(attribute="project_id")
    query = fields.String(attribute="text")
    language = fields.String()
    country = fields.String()
    tagIds = fields.List(fields.String(), attribute="tag_ids")
    createdAt = IsoDateTime(attribute="created_at")
    updatedAt = IsoDateTime(attribute="updated_at")


class QuerySortSchema(SortSchema):
    field = fields.String(
        required=True,
        validate=validate.OneOf(("createdAt", "updatedAt", "query", "language", "country")),
    )


class QueryListFilterSchema(Schema):
    query = Text(validate=validate.Length(max=2000))
    languages = fields.List(
        Text(validate=validate.Length(min=2, max=5)),
        load_default=list,
        validate=validate.Length(max=MAX_LIST_VALUES),
    )
    countries = fields.List(
        Text(validate=validate.Length(equal=2)),
        load_default=list,
        validate=validate.Length(max=MAX_LIST_VALUES),
    )
    sort = fields.List(
        fields.Nested(QuerySortSchema),
        load_default=list,
        validate=validate.Length(max=MAX_SORT_TERMS),
    )


def page_args_schema(max_limit: int, default_limit: int) -> type[Schema]:
    """Query-string pagination: ``limit`` (1..max) and a 1-based ``page``."""
    return Schema.from_dict(
        {
            "limit": fields.Integer(
                load_default=default_limit, validate=validate.Range(min=1, max=max_limit)
            ),
            # Bounded so that the row offset always fits PostgreSQL's bigint (else a 500).
            "page": fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE)),
        },
        name=f"PageArgs{max_limit}",
    )


QueryPageArgs = page_args_schema(500, 50)
JobPageArgs = page_args_schema(100, 50)


# --------------------------------------------------------------------------------- jobs


class TriggerJobSchema(Schema):
    aiModels = fields.List(
        fields.String(validate=validate.OneOf(AI_MODELS)),
        required=True,
        validate=[validate.Length(min=1), validate.Length(max=MAX_LIST_VALUES)],
        metadata={"description": "AI model identifiers to run each query on"},
    )
    executionCount = strict_int(
        required=True,
        validate=validate.Range(min=1),
        metadata={
            "description": "Runs per query and model (>= 1): the job has queries x aiModels x "
            "executionCount executions, at most JOBYARD_MAX_EXECUTIONS_PER_JOB (default "
            "200,000); a larger job is refused with 422."
        },
    )


class UserSchema(Schema):
    id = fields.UUID()
    email = fields.String()
    firstName = fields.String(attribute="first_name")
    lastName = fields.String(attribute="last_name")


class JobSchema(Schema):
    id = fields.UUID()
    project = fields.UUID(attribute="project_id")
    type = fields.String()
    totalExecutions = fields.Integer(attribute="total")
    pendingExecutions = fields.Integer(attribute="pending")
    retryingExecutions = fields.Integer(attribute="retrying")
    successExecutions = fields.Integer(attribute="success")
    failedExecutions = fields.Integer(attribute="failed")
    status = fields.String()
    aiModels = fields.Function(lambda job: job.payload.get("aiModels"))
    executionCount = fields.Function(lambda job: job.payload.get("executionCount"))
    createdAt = IsoDateTime(attribute="created_at")
    updatedAt = IsoDateTime(attribute="updated_at")
    startedAt = IsoDateTime(attribute="started_at")
    finishedAt = IsoDateTime(attribute="finished_at")
    createdBy = fields.Nested(UserSchema, attribute="created_by", allow_none=True)
    cost = fields.Float(
        metadata={"description": "USD spent on the job's model calls so far, failed ones too"}
    )


class ModelSummarySchema(Schema):
    model = fields.String()
    totalExecutions = fields.Integer(attribute="total")
    pendingExecutions = fields.Integer(attribute="pending")
    retryingExecutions = fields.Integer(attribute="retrying")
    successExecutions = fields.Integer(attribute="success")
    failedExecutions = fields.Integer(attribute="failed")
    mentionRate = fields.Float(
        attribute="mention_rate",
        allow_none=True,
        metadata={"description": "Share of successful answers that mention the project"},
    )


class JobDetailSchema(JobSchema):
    models = fields.List(
        fields.Nested(ModelSummarySchema),
        attribute="model_summaries",
        metadata={"description": "Per AI model: executions by status and mention rate"},
    )


class JobSortSchema(SortSchema):
    field = fields.String(
        required=True, validate=validate.OneOf(("createdAt", "updatedAt", "status"))
    )


class JobListFilterSchema(Schema):
    status = fields.String(
        validate=validate.OneOf(
            ("pending", "processing", "completed", "failed", "partial_failed", "canceled")
        )
    )
    createdBy = fields.UUID()
    sort = fields.List(
        fields.Nested(JobSortSchema),
        load_default=list,
        validate=validate.Length(max=MAX_SORT_TERMS),
    )


# --------------------------------------------------------------------------- executions


def _result(execution: Any, key: str, default: Any = None) -> Any:
    return (execution.result or {}).get(key, default)


def _item(key: str) -> Any:
    return lambda execution: (execution.item or {}).get(key)


class ExecutionSchema(Schema):
    jobExecutionId = fields.UUID(attribute="id")
    jobId = fields.UUID(attribute="job_id")
    queryId = fields.Function(_item("queryId"), metadata={"type": "string", "format": "uuid"})
    model = fields.Function(_item("model"), metadata={"type": "string"})
    status = fields.String()
    executionNumber = fields.Integer(
        attribute="attempts", metadata={"description": "Attempts made so far"}
    )
    runNumber = fields.Function(_item("run"), metadata={"type": "integer"})
    initiatedAt = IsoDateTime(attribute="started_at")
    createdAt = IsoDateTime(attribute="created_at")
    finishedAt = IsoDateTime(attribute="finished_at")
    country = fields.Function(_item("country"), metadata={"type": "string"})
    language = fields.Function(_item("language"), metadata={"type": "string"})
    text = fields.Function(lambda e: _result(e, "text"))
    hasSources = fields.Function(lambda e: bool(_result(e, "sources")))
    sources = fields.Function(lambda e: _result(e, "sources", []))
    entities = fields.Function(lambda e: _result(e, "entities", []))
    retrievedSources = fields.Function(lambda e: _result(e, "retrievedSources", []))
    webSearch = fields.Function(lambda e: _result(e, "webSearch"), metadata={"type": "string"})
    servedModel = fields.Function(lambda e: _result(e, "servedModel"), metadata={"type": "string"})
    usage = fields.Function(lambda e: _result(e, "usage"), metadata={"type": "object"})
    cost = fields.Float(metadata={"description": "USD spent on this execution, every attempt"})
    simulated = fields.Function(lambda e: bool(_result(e, "simulated", False)))
    error = fields.String()


# ---------------------------------------------------------------------------- paging


class PageInfoSchema(Schema):
    totalRecords = fields.Integer()
    limit = fields.Integer()
    currentPage = fields.Integer()
    totalPages = fields.Integer()
    nextPage = fields.Integer(allow_none=True)
    prevPage = fields.Integer(allow_none=True)


def page_envelope(page: Page) -> dict[str, Any]:
    """Mentionlab's list envelope ``{page: {...}, results: [...]}`` (dumped by page_schema)."""
    total_pages = math.ceil(page.total / page.limit) if page.total else 0
    return {
        "page": {
            "totalRecords": page.total,
            "limit": page.limit,
            "currentPage": page.page,
            "totalPages": total_pages,
            "nextPage": page.page + 1 if page.page < total_pages else None,
            "prevPage": page.page - 1 if page.page > 1 else None,
        },
        "results": page.items,
    }


def page_schema(item: type[Schema]) -> type[Schema]:
    """An OpenAPI-documented page of ``item``."""
    return Schema.from_dict(
        {"page": fields.Nested(PageInfoSchema), "results": fields.List(fields.Nested(item))},
        name=f"{item.__name__.removesuffix('Schema')}Page",
    )


# -------------------------------------------------------------------------- cached jobs

PROVIDER_KEYS = tuple(PROVIDERS)


class CachedJobCreateSchema(Schema):
    queryId = fields.UUID(
        required=True, metadata={"description": "A query of the x-project-id project"}
    )
    aiModels = fields.List(
        fields.String(validate=validate.OneOf(PROVIDER_KEYS)),
        required=True,
        validate=[validate.Length(min=1), validate.Length(max=MAX_LIST_VALUES)],
        metadata={
            "description": "Provider keys; each runs as its provider's default model "
            "(the response lists the concrete model ids)"
        },
    )
    executionCount = strict_int(
        required=True,
        validate=validate.Range(min=1),
        metadata={
            "description": "Runs per model on every run of the plan (>= 1): a run has aiModels "
            "x executionCount executions, at most JOBYARD_MAX_EXECUTIONS_PER_JOB (default "
            "200,000); a larger plan is refused with 422."
        },
    )


class CachedJobManySchema(Schema):
    cachedJobs = fields.List(
        fields.Nested(CachedJobCreateSchema),
        required=True,
        validate=validate.Length(min=1, max=1000),
        metadata={"description": "One plan per query; a query may appear once per request"},
    )


class CachedJobTriggerSchema(Schema):
    """No fields: the project comes from x-project-id (an empty or absent body)."""


class CachedJobSchema(Schema):
    id = fields.UUID()
    project = fields.UUID(attribute="project_id")
    query_id = fields.UUID()
    query = fields.String(attribute="query.text")
    aiModels = fields.List(
        fields.String(),
        attribute="ai_models",
        metadata={"description": "The concrete model ids the provider keys resolved to"},
    )
    executionCount = fields.Integer(attribute="execution_count")
    language = fields.String(attribute="query.language")
    country = fields.String(attribute="query.country")
    status = fields.Function(
        effective_status,
        metadata={
            "type": "string",
            "description": "pending (never run), active (its last run is in progress), "
            "ended (its last run finished; it may contain failures), inactive (the "
            "project's recurrenceStatus is paused)",
            "enum": ["pending", "active", "ended", "inactive"],
        },
    )
    updatedAt = IsoDateTime(attribute="updated_at")
    createdAt = IsoDateTime(attribute="created_at")
    restricted = fields.Boolean()


class CachedJobSortSchema(SortSchema):
    field = fields.String(
        required=True, validate=validate.OneOf(("createdAt", "updatedAt", "lastRunAt"))
    )


class CachedJobListFilterSchema(Schema):
    sort = fields.List(
        fields.Nested(CachedJobSortSchema),
        load_default=list,
        validate=validate.Length(max=MAX_SORT_TERMS),
    )
