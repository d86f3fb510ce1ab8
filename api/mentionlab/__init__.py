"""The AI-visibility family, compatible with Mentionlab's REST API (``/api/...``)."""

from __future__ import annotations

from flask_smorest import Api

from api.mentionlab import cached_jobs, executions, jobs, projects, queries

BLUEPRINTS = (projects.blp, queries.blp, jobs.blp, executions.blp, cached_jobs.blp)


def register_mentionlab(api: Api) -> None:
    """Register the family's blueprints (each authenticates every request first)."""
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
