"""The knowledge-base sync family, compatible with Smart DB / MindsDB's REST API: source
source databases, knowledge bases, and the jobs that sync one into the other."""

from __future__ import annotations

from api.families import Family
from api.smartdb import databases, jobs, knowledge_bases
from api.smartdb.envelope import SmartDbError, error_envelope

FAMILY = Family(
    name="smartdb",
    title="jobyard — Smart DB-compatible knowledge-base sync API",
    description="Register source databases (checked on creation, stored encrypted, never "
    "echoed) and knowledge bases, search them, and keep them fresh with scheduled sync jobs "
    "(POST /jobs/create, as Smart DB documents it). Answers are {success, message, data}; "
    "errors {success: false, error: {code, message, details}}.",
    url_prefixes=("/databases", "/knowledge_bases", "/jobs"),
    envelope=error_envelope,
    error_schema=SmartDbError,
    api_key_headers=("x-api-key",),
    accepts_bearer=True,
    blueprints=(databases.blp, knowledge_bases.blp, jobs.blp),
    docs_prefix="/smartdb/",
    security_schemes={
        "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    },
)
