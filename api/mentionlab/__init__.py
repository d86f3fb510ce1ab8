"""The AI-visibility family, compatible with Mentionlab's REST API (``/api/...``)."""

from __future__ import annotations

from api.families import Family
from api.mentionlab import cached_jobs, events, executions, jobs, projects, queries
from api.mentionlab.envelope import NestError, nest_envelope

FAMILY = Family(
    name="mentionlab",
    title="jobyard — Mentionlab-compatible AI visibility API",
    description="Projects, queries, AI runs on many models, cached (recurring) jobs, "
    "executions with answers, sources and brand mentions. Compatible with the "
    "Mentionlab REST API.",
    url_prefixes=("/api/",),
    envelope=nest_envelope,
    error_schema=NestError,
    api_key_headers=("x-api-key",),
    accepts_bearer=True,
    blueprints=(projects.blp, queries.blp, jobs.blp, events.blp, executions.blp, cached_jobs.blp),
    # /api/openapi.json and /api/docs; the root's (api/docs_home.py) are these too, but
    # on the Smart DB seed's port.
    docs_prefix="/api/",
    security_schemes={
        "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    },
)
