"""``/api/v1/job-executions``: one execution with its answer, sources and brand mentions."""

from __future__ import annotations

import uuid

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_principal
from api.mentionlab.context import authenticate_first, context_headers
from api.mentionlab.schemas import ExecutionSchema
from api.transaction import request_session
from shared.engine import jobs
from shared.mentionlab.runs import AI_QUERIES
from shared.models import Execution

blp = Blueprint(
    "mentionlab-executions",
    __name__,
    url_prefix="/api/v1/job-executions",
    description="Job executions (Mentionlab)",
)
blp.before_request(authenticate_first)


@blp.route("/<uuid:execution_id>")
class ExecutionById(MethodView):
    @context_headers
    @blp.response(200, ExecutionSchema)
    def get(self, execution_id: uuid.UUID) -> Execution:
        """Get one execution of an AI run"""
        session = request_session()
        return jobs.get_execution(
            session,
            current_principal().organisation_id,
            execution_id,
            "Job execution",
            AI_QUERIES,
        )
