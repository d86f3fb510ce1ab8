"""The jobs family, compatible with Valpay's ``/v1/jobs`` API: every job type behind one
list (cursor pages), create and get, for a bearer JWT only."""

from __future__ import annotations

from api.families import Family
from api.valpay import jobs
from api.valpay.envelope import ValpayError, error_envelope

FAMILY = Family(
    name="valpay",
    vendor="Valpay",
    title="jobyard — Valpay-compatible jobs API",
    description="List, create and read jobs of every type (AI query runs, batches, KB "
    "syncs) with a JWT. Answers are {success, data, message}; lists page with an opaque "
    "lastEvaluatedKey cursor that stays stable while jobs are being created.\n\n"
    "`/v1/jobs/{id}` is also where super.AI's official client reads a data point (and "
    "its `/response`, `/cancel`, `/review`): the credential tells them apart. With "
    "`Authorization: Bearer` these paths are this API's, as ever; with `API-KEY` or "
    "`x-api-key` and no bearer token they are super.AI's (see its docs at "
    "/v1/apps/docs). Without either, the 401 names both.",
    url_prefixes=("/v1/jobs",),
    envelope=error_envelope,
    error_schema=ValpayError,
    api_key_headers=(),  # a bearer JWT only
    accepts_bearer=True,
    blueprints=(jobs.blp,),
    docs_prefix="/v1/jobs/",
    security_schemes={"BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
)
