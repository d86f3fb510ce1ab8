"""The batches family, compatible with super.AI's ``/v1/apps/{appId}`` API: an app (a
project) processes batches of inputs, one data point per input."""

from __future__ import annotations

from api.families import Family
from api.superai import apps, secrets
from api.superai.envelope import SuperAiError, error_envelope

FAMILY = Family(
    name="superai",
    title="jobyard — super.AI-compatible batches API",
    description="Submit batches of inputs to an app; each input becomes a data point that "
    "goes through the app's processor (a prompt template and a model). Read, cancel and "
    "queue data points; read batches with their counters. Callbacks carry each data point's "
    "response (a link above a size cap), and the batch's comes after all of its data "
    "points'; they are always signed (Standard Webhooks, with the organisation's secret: "
    "GET /v1/webhooks/secret), retried for about a day, logged and resendable.",
    url_prefixes=("/v1/apps/", "/v1/webhooks/"),
    envelope=error_envelope,
    error_schema=SuperAiError,
    api_key_headers=("API-KEY", "x-api-key"),
    accepts_bearer=True,
    blueprints=(apps.blp, secrets.blp),
    docs_prefix="/v1/apps/",
    security_schemes={
        "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "API-KEY"},
        "XApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    },
)
