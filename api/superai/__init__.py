"""The batches family, compatible with super.AI's ``/v1/apps/{appId}`` API: an app (a
project) processes batches of inputs, one data point per input. Its official Python
client reads a data point under ``/v1/jobs/{id}``, beside Valpay's jobs: there, its API
key headers name this family (:mod:`api.routing`)."""

from __future__ import annotations

from api.families import Family
from api.superai import apps, data_points, secrets
from api.superai.envelope import SuperAiError, error_envelope

FAMILY = Family(
    name="superai",
    vendor="super.AI",
    title="jobyard — super.AI-compatible batches API",
    description="Submit batches of inputs to an app; each input becomes a data point that "
    "goes through the app's processor (a prompt template and a model). Read, cancel, "
    "queue and review data points; read batches with their counters. Callbacks carry each "
    "data point's response (a link above a size cap), and the batch's comes after all of "
    "its data points'; they are always signed (Standard Webhooks, with the organisation's "
    "secret: GET /v1/webhooks/secret), retried for about a day, logged and resendable.\n\n"
    "The official Python client (`superai`, pointed at `http://HOST/v1`) works unchanged. "
    "It reads a data point by its uuid under `/v1/jobs/{id}` (`/response`, `/cancel`, "
    "`/review`): those paths are also Valpay's jobs API, and the credential tells them "
    "apart. With `Authorization: Bearer` they are Valpay's (whatever comes with it); "
    "with `API-KEY` (or `x-api-key`) they are this API's, in this envelope. Without "
    "either, the 401 names both.",
    url_prefixes=("/v1/apps/", "/v1/webhooks/"),
    keyed_prefixes=("/v1/jobs/",),
    envelope=error_envelope,
    error_schema=SuperAiError,
    api_key_headers=("API-KEY", "x-api-key"),
    accepts_bearer=True,
    blueprints=(apps.blp, data_points.blp, secrets.blp),
    docs_prefix="/v1/apps/",
    security_schemes={
        "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "API-KEY"},
        "XApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    },
)
