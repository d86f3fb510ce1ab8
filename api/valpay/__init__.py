"""The jobs family, compatible with Valpay's ``/v1/jobs`` API: every job type behind one
list (cursor pages), create and get, for a bearer JWT only."""

from __future__ import annotations

from api.families import Family
from api.valpay import jobs
from api.valpay.envelope import ValpayError, error_envelope

FAMILY = Family(
    name="valpay",
    title="jobyard — Valpay-compatible jobs API",
    description="List, create and read jobs of every type (AI query runs, batches, KB "
    "syncs) with a JWT. Answers are {success, data, message}; lists page with an opaque "
    "lastEvaluatedKey cursor that stays stable while jobs are being created.",
    url_prefixes=("/v1/jobs",),
    envelope=error_envelope,
    error_schema=ValpayError,
    api_key_headers=(),  # a bearer JWT only
    accepts_bearer=True,
    blueprints=(jobs.blp,),
    docs_prefix="/v1/jobs/",
    security_schemes={"BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
)
