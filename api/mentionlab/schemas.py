"""Marshmallow schemas of the Mentionlab-compatible family (camelCase on the wire)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_dump, validate

from api.openapi import Answer
from api.params import WholeNumber
from shared.ai_models import AI_MODELS, PROVIDERS
from shared.mentionlab.cached_jobs import effective_status
from shared.mentionlab.models import CachedJobStatus
from shared.mentionlab.runs import AI_QUERIES
from shared.models import ExecutionStatus, JobStatus
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
MAX_RETRY_IDS = 1000  # executions named in one retry


class IsoDateTime(fields.DateTime):
    """``2026-06-08T12:00:00.000Z``: UTC with milliseconds, as Mentionlab writes them
    (documented as a ``date-time`` string)."""

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
    execution_count = WholeNumber(
        data_key="executionCount", validate=validate.Range(min=1, max=100)
    )
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


class ProjectSchema(Answer):
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
    recurrence = fields.String(metadata={"enum": list(RECURRENCES)})
    recurrenceStatus = fields.String(
        attribute="recurrence_status", metadata={"enum": list(RECURRENCE_STATUSES)}
    )
    webSearch = fields.Boolean(attribute="web_search", allow_none=True)
    createdAt = IsoDateTime(attribute="created_at")
    updatedAt = IsoDateTime(attribute="updated_at")


# ------------------------------------------------------------------------------ queries


class QueryCreateSchema(Schema):
    query = Text(required=True, validate=validate.Length(min=1, max=2000))
    language = Text(load_default="en", validate=validate.Length(min=2, max=5))
    # An ISO 3166-1 alpha-2 code, stored upper-cased in two characters: only A-Z letters
    # keep two characters when upper-cased ("ß" becomes "SS").
    country = Text(
        load_default="US",
        validate=[
            validate.Length(equal=2),
            validate.Regexp(r"[A-Za-z]*\Z", error="Must be an ISO 3166-1 alpha-2 code (A-Z)."),
        ],
    )
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


class QuerySchema(Answer):
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
    executionCount = WholeNumber(
        required=True,
        validate=validate.Range(min=1),
        metadata={
            "description": "Runs per query and model (>= 1; a number, whole: 3 or 3.0): the "
            "job has queries x aiModels x executionCount executions, at most "
            "JOBYARD_MAX_EXECUTIONS_PER_JOB (default 200,000); a larger job is refused with 422."
        },
    )


class RetryJobSchema(Schema):
    executionIds = fields.List(
        fields.UUID(),
        validate=validate.Length(min=1, max=MAX_RETRY_IDS),
        metadata={
            "description": "Only these failed executions of the job (default: every failed "
            "one, except those canceled one by one)"
        },
    )


class UserSchema(Answer):
    id = fields.UUID()
    email = fields.String()
    firstName = fields.String(attribute="first_name")
    lastName = fields.String(attribute="last_name")


JOB_STATUSES = [s.value for s in JobStatus]


class JobSchema(Answer):
    """An AI run (a job of type ai_queries: the only type this family answers)."""

    id = fields.UUID()
    # The run's project, from Mentionlab's own table (job_types.attach_owners).
    project = fields.UUID(attribute="owner_id")
    type = fields.String(metadata={"enum": [AI_QUERIES]})
    totalExecutions = fields.Integer(attribute="total")
    pendingExecutions = fields.Integer(attribute="pending")
    retryingExecutions = fields.Integer(attribute="retrying")
    successExecutions = fields.Integer(attribute="success")
    failedExecutions = fields.Integer(attribute="failed")
    status = fields.String(metadata={"enum": JOB_STATUSES})
    aiModels = fields.Function(
        lambda job: job.payload["aiModels"],
        # Plain strings, not the trigger's enum: models come and go, and a client
        # generated with today's list would fail to read an older job's.
        metadata={"type": "array", "items": {"type": "string"}},
    )
    executionCount = fields.Function(
        lambda job: job.payload["executionCount"], metadata={"type": "integer"}
    )
    createdAt = IsoDateTime(attribute="created_at")
    updatedAt = IsoDateTime(attribute="updated_at")
    startedAt = IsoDateTime(attribute="started_at", allow_none=True)
    finishedAt = IsoDateTime(attribute="finished_at", allow_none=True)
    createdBy = fields.Nested(
        UserSchema,
        attribute="created_by",
        allow_none=True,
        metadata={"description": "Who triggered the run; null for a scheduled run"},
    )
    cost = fields.Float(
        metadata={"description": "USD spent on the job's model calls so far, failed ones too"}
    )


class ModelSummarySchema(Answer):
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
    status = fields.String(validate=validate.OneOf(JOB_STATUSES))
    createdBy = fields.UUID()
    sort = fields.List(
        fields.Nested(JobSortSchema),
        load_default=list,
        validate=validate.Length(max=MAX_SORT_TERMS),
    )


# --------------------------------------------------------------------------- executions


class SourceSchema(Answer):
    """A web page behind an answer, at its 1-based position in its list."""

    optional = frozenset({"redirectUrl"})

    position = fields.Integer()
    url = fields.String(
        allow_none=True,
        metadata={"description": "The page; null when only a redirect link was given"},
    )
    domain = fields.String()
    title = fields.String(allow_none=True)
    redirectUrl = fields.String(metadata={"description": "The vendor's redirect link"})
    cited = fields.Boolean(metadata={"description": "Whether the answer cites it"})


class EntitySchema(Answer):
    """A brand of the project (its name, an alias or a competitor) in an answer."""

    displayName = fields.String()
    isPrimary = fields.Boolean()
    mentioned = fields.Boolean()
    mentionCount = fields.Integer()
    position = fields.Integer(
        allow_none=True, metadata={"description": "1 for the first brand named; null if absent"}
    )


class ExecutionSchema(Answer):
    """One execution of an AI run: its answer, once it has one."""

    jobExecutionId = fields.UUID()
    jobId = fields.UUID()
    queryId = fields.UUID()
    model = fields.String()
    status = fields.String(metadata={"enum": [s.value for s in ExecutionStatus]})
    executionNumber = fields.Integer(metadata={"description": "Attempts made so far"})
    runNumber = fields.Integer()
    initiatedAt = IsoDateTime(allow_none=True)
    createdAt = IsoDateTime()
    finishedAt = IsoDateTime(allow_none=True)
    country = fields.String(allow_none=True)
    language = fields.String(allow_none=True)
    text = fields.String(allow_none=True, metadata={"description": "The answer; null until done"})
    hasSources = fields.Boolean()
    sources = fields.List(fields.Nested(SourceSchema), metadata={"description": "Cited"})
    entities = fields.List(fields.Nested(EntitySchema))
    retrievedSources = fields.List(
        fields.Nested(SourceSchema), metadata={"description": "Retrieved by its web search"}
    )
    webSearch = fields.String(
        allow_none=True,
        metadata={"description": "on, off or unavailable (the provider has no search)"},
    )
    servedModel = fields.String(allow_none=True)
    usage = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        allow_none=True,
        metadata={"description": "Tokens and search calls, as the vendor reported them"},
    )
    cost = fields.Float(metadata={"description": "USD spent on this execution, every attempt"})
    simulated = fields.Boolean()
    error = fields.String(allow_none=True)

    @pre_dump
    def read_execution(self, execution: Any, **kwargs: Any) -> dict[str, Any]:
        """The row's columns, its item (what was asked) and its result (the answer)."""
        item, result = execution.item or {}, execution.result or {}
        return {
            "jobExecutionId": execution.id,
            "jobId": execution.job_id,
            "queryId": item.get("queryId"),
            "model": item.get("model"),
            "status": execution.status,
            "executionNumber": execution.attempts,
            "runNumber": item.get("run"),
            "initiatedAt": execution.started_at,
            "createdAt": execution.created_at,
            "finishedAt": execution.finished_at,
            "country": item.get("country"),
            "language": item.get("language"),
            "text": result.get("text"),
            "hasSources": bool(result.get("sources")),
            "sources": result.get("sources", []),
            "entities": result.get("entities", []),
            "retrievedSources": result.get("retrievedSources", []),
            "webSearch": result.get("webSearch"),
            "servedModel": result.get("servedModel"),
            "usage": result.get("usage"),
            "cost": execution.cost,
            "simulated": bool(result.get("simulated", False)),
            "error": execution.error,
        }


# ---------------------------------------------------------------------------- paging


class PageInfoSchema(Answer):
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
    return Answer.from_dict(
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
    executionCount = WholeNumber(
        required=True,
        validate=validate.Range(min=1),
        metadata={
            "description": "Runs per model on every run of the plan (>= 1; a number, whole: "
            "3 or 3.0): a run has aiModels "
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


class CachedJobSchema(Answer):
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
            "enum": [s.value for s in CachedJobStatus],
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
