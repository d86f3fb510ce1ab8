"""What the callbacks of a batch look like, for the spec (the OpenAPI ``callbacks`` of
``POST /v1/apps/{appId}/jobs``); shared/batches/callbacks.py makes them."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from api.superai.schemas import DataPointResponseSchema
from shared.batches.service import BatchState

SIGNATURE_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "The callback's id: the same on every attempt (deduplicate on it); "
        "the delivery log's id",
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "When this attempt was signed, in Unix seconds",
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "Always there: `v1,<base64>` per signing secret, space-separated "
        "(two during the 24 h after a rotation). Each is base64 of HMAC-SHA256 over "
        "`{webhook-id}.{webhook-timestamp}.{body}` with the base64-decoded secret after "
        "`whsec_` (GET /v1/webhooks/secret); verify with any Standard Webhooks library",
    },
]

CALLBACK_STATES = ["COMPLETED", "FAILED", "CANCELED"]


class DataPointCallbackSchema(Schema):
    """A data point's callback, POSTed to the batch's ``callbackUrl`` when it finishes."""

    id = fields.UUID(required=True, metadata={"description": "The data point's id"})
    uuid = fields.UUID(required=True, metadata={"description": "The same id"})
    state = fields.String(required=True, metadata={"enum": CALLBACK_STATES})
    action = fields.String(required=True, metadata={"enum": ["STATE_CHANGE"]})
    responseIncluded = fields.Boolean(
        required=True,
        metadata={
            "description": "true: `response` holds what `responseUrl` answers; false: the "
            "response is larger than the size cap (JOBYARD_CALLBACK_MAX_RESPONSE_BYTES, "
            "256 KB of JSON by default) and `response` is absent: GET `responseUrl`"
        },
    )
    response = fields.Nested(
        DataPointResponseSchema,
        metadata={
            "description": "What GET /v1/apps/{appId}/jobs/{id}/response answers, when "
            "`responseIncluded` is true"
        },
    )
    responseUrl = fields.String(
        required=True,
        metadata={"description": "GET /v1/apps/{appId}/jobs/{id}/response, as a full URL"},
    )


class BatchCallbackSchema(Schema):
    """A batch's callback, POSTed when it ends, after every one of its data points'
    callbacks was delivered or given up."""

    version = fields.String(required=True, metadata={"enum": ["2"]})
    entityType = fields.String(required=True, metadata={"enum": ["batch"]})
    entityId = fields.UUID(required=True, metadata={"description": "The batch's id"})
    state = fields.String(
        required=True,
        metadata={"enum": [s.value for s in BatchState if s is not BatchState.IN_PROGRESS]},
    )
    appId = fields.UUID(required=True)


def _callback(summary: str, description: str, schema: type[Schema]) -> dict[str, Any]:
    return {
        "{$request.body#/callbackUrl}": {
            "post": {
                "summary": summary,
                "description": description,
                "parameters": SIGNATURE_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": schema}},
                },
                "responses": {
                    "2XX": {"description": "Delivered"},
                    "410": {"description": "Gone: the callback is not sent again"},
                    "default": {
                        "description": "Sent again later: at once, then after 5 s, 5 min, "
                        "30 min, 2 h, 5 h, 10 h and 10 h (jittered)"
                    },
                },
            }
        }
    }


def callbacks_doc() -> dict[str, Any]:
    """The ``callbacks`` of the create: per data point, then once for the batch."""
    return {
        "dataPointFinished": _callback(
            "A data point finished",
            "Its state and its response (or, above the size cap, a link to it). A data "
            "point's later callback is never sent before its earlier one was settled.",
            DataPointCallbackSchema,
        ),
        "batchFinished": _callback(
            "The batch ended",
            "Sent only after every one of the batch's data-point callbacks was delivered "
            "or given up: a receiver may close the batch on it.",
            BatchCallbackSchema,
        ),
    }
