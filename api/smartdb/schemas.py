"""The shapes of Smart DB's answers, one per operation: ``{success: true, message, data}``
with ``data`` typed (a database, a knowledge base, a sync job, a page of history...), so
that a client generated from the spec reads typed objects, not an untyped ``data``."""

from __future__ import annotations

from marshmallow import Schema, fields

from api.openapi import Answer
from shared.kb.models import SyncJobStatus
from shared.kb.sync import RUNNING
from shared.models import JobStatus

INSTANT = {"format": "date-time"}


class DatabaseSchema(Answer):
    """A registered source database: never its URL or credentials."""

    name = fields.String()
    engine = fields.String(metadata={"description": "postgresql, mysql or sqlite"})
    host = fields.String(allow_none=True)
    database = fields.String(allow_none=True)
    created_at = fields.String(metadata=INSTANT)


class KnowledgeBaseSchema(Answer):
    optional = frozenset({"chunks"})

    name = fields.String()
    embedder = fields.String()
    dimensions = fields.Integer()
    id_column = fields.String(allow_none=True)
    metadata_columns = fields.List(fields.String())
    created_at = fields.String(metadata=INSTANT)
    chunks = fields.Integer(
        metadata={"description": "How many chunks it holds (on create and read, not in lists)"}
    )


class SearchResultSchema(Answer):
    id = fields.String(metadata={"description": "The source row's id (its id_column)"})
    chunk_id = fields.String()
    chunk_content = fields.String()
    metadata = fields.Dict(metadata={"description": "The row's metadata columns"})
    distance = fields.Float(metadata={"description": "1 - cosine similarity"})
    relevance = fields.Float(metadata={"description": "Cosine similarity, within 0..1"})


SYNC_JOB_STATUSES = [SyncJobStatus.SCHEDULED, SyncJobStatus.PAUSED, SyncJobStatus.COMPLETED]


class SyncJobCreatedSchema(Answer):
    job_id = fields.UUID()
    job_name = fields.String()
    status = fields.String(metadata={"enum": SYNC_JOB_STATUSES})
    created_at = fields.String(metadata=INSTANT)
    next_run = fields.String(
        allow_none=True, metadata={**INSTANT, "description": "null unless scheduled"}
    )


class SyncRunSchema(Answer):
    """One run of a sync job (a job of the engine, type kb_sync: ``job_id``)."""

    job_id = fields.UUID()
    trigger = fields.String(metadata={"enum": ["schedule", "manual", "api"]})
    slot = fields.String(
        allow_none=True, metadata={**INSTANT, "description": "The scheduled slot it ran for"}
    )
    status = fields.String(metadata={"enum": [RUNNING, *(s.value for s in JobStatus)]})
    run_start = fields.String(metadata=INSTANT)
    run_end = fields.String(allow_none=True, metadata=INSTANT)
    rows_read = fields.Integer()
    rows_written = fields.Integer()
    rows_without_filter_value = fields.Integer()
    error = fields.String(allow_none=True)


class SyncJobSchema(Answer):
    job_id = fields.UUID()
    job_name = fields.String()
    source_table = fields.String()
    kb_name = fields.String(allow_none=True)
    content_columns = fields.List(fields.String())
    filter_column = fields.String()
    interval = fields.String()
    start_time = fields.String(metadata=INSTANT)
    end_time = fields.String(metadata=INSTANT)
    status = fields.String(metadata={"enum": SYNC_JOB_STATUSES})
    running = fields.Boolean()
    created_at = fields.String(metadata=INSTANT)
    next_run = fields.String(allow_none=True, metadata=INSTANT)
    synced_up_to = fields.Raw(
        allow_none=True,
        metadata={
            "description": "The filter column's value the next run reads from (a time in "
            "ISO 8601, a number or a string, as the column holds it); null before the first"
        },
    )
    last_run = fields.Nested(SyncRunSchema, allow_none=True)


class RunStartedSchema(SyncJobSchema):
    run_job_id = fields.UUID(metadata={"description": "The run's job (GET /v1/jobs/{jobId})"})


def answer(data: fields.Field, name: str) -> type[Schema]:
    """The documented ``{success: true, message, data}`` answer around ``data``."""
    return Answer.from_dict(
        {
            "success": fields.Boolean(metadata={"enum": [True]}),
            "message": fields.String(),
            "data": data,
        },
        name=name,
    )


DatabaseAnswer = answer(fields.Nested(DatabaseSchema), "DatabaseAnswer")
DatabaseListAnswer = answer(fields.List(fields.Nested(DatabaseSchema)), "DatabaseListAnswer")
DatabaseDeletedAnswer = answer(
    fields.Nested(Answer.from_dict({"name": fields.String()}, name="DatabaseDeleted")),
    "DatabaseDeletedAnswer",
)
KnowledgeBaseAnswer = answer(fields.Nested(KnowledgeBaseSchema), "KnowledgeBaseAnswer")
KnowledgeBaseListAnswer = answer(
    fields.List(fields.Nested(KnowledgeBaseSchema)), "KnowledgeBaseListAnswer"
)
KnowledgeBaseDeletedAnswer = answer(
    fields.Nested(Answer.from_dict({"name": fields.String()}, name="KnowledgeBaseDeleted")),
    "KnowledgeBaseDeletedAnswer",
)
SearchAnswer = answer(fields.List(fields.Nested(SearchResultSchema)), "SearchAnswer")
SyncJobCreatedAnswer = answer(fields.Nested(SyncJobCreatedSchema), "SyncJobCreatedAnswer")
SyncJobAnswer = answer(fields.Nested(SyncJobSchema), "SyncJobAnswer")
SyncJobListAnswer = answer(fields.List(fields.Nested(SyncJobSchema)), "SyncJobListAnswer")
SyncJobDeletedAnswer = answer(
    fields.Nested(Answer.from_dict({"job_name": fields.String()}, name="SyncJobDeleted")),
    "SyncJobDeletedAnswer",
)
RunStartedAnswer = answer(fields.Nested(RunStartedSchema), "RunStartedAnswer")
HistoryAnswer = answer(fields.List(fields.Nested(SyncRunSchema)), "HistoryAnswer")
