"""The payloads ``POST /v1/jobs`` takes for jobyard's own job types: each is the payload
its family's own create takes, plus what that family has in its path. Their job types'
specs name them (``"api.valpay.payloads:AiQueriesPayload"``); an installed job type brings
its own payload schema (:mod:`shared.engine.job_types`)."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import Schema, fields, validate

from api.mentionlab.schemas import TriggerJobSchema
from api.superai.schemas import ONE_SOURCE_OF_INPUTS, CreateJobsSchema


class AiQueriesPayload(TriggerJobSchema):
    """An AI run, as ``POST /api/jobs/trigger`` takes it, plus the project it runs."""

    projectId = fields.UUID(required=True, metadata={"description": "The project to run"})


class BatchPayload(CreateJobsSchema):
    """A batch, as ``POST /v1/apps/{appId}/jobs`` takes it, plus its app."""

    appId = fields.UUID(required=True, metadata={"description": "The app (project)"})

    # How the spec documents it: a batch's fields, with exactly one source of inputs.
    openapi_doc: ClassVar[Any]


BatchPayload.openapi_doc = {"allOf": [BatchPayload, ONE_SOURCE_OF_INPUTS]}


class KbSyncPayload(Schema):
    """A run, now, of a sync job created with ``POST /jobs/create`` (Smart DB)."""

    jobName = fields.String(
        required=True,
        validate=validate.Length(min=1, max=63),
        metadata={"description": "The sync job to run (its job_name)"},
    )
