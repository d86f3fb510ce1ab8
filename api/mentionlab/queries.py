"""``/api/queries``: the questions asked of AI models about a project."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_principal
from api.idempotency import create_endpoint
from api.mentionlab.context import (
    authenticate_first,
    context_headers,
    project_headers,
    required_project_id,
)
from api.mentionlab.envelope import nest_envelope
from api.mentionlab.schemas import (
    QueryCreateSchema,
    QueryListFilterSchema,
    QueryManySchema,
    QueryPageArgs,
    QuerySchema,
    page_envelope,
    page_schema,
)
from api.transaction import request_session
from shared.mentionlab import projects
from shared.mentionlab.models import Query

blp = Blueprint(
    "mentionlab-queries", __name__, url_prefix="/api/queries", description="Queries (Mentionlab)"
)
blp.before_request(authenticate_first)


@blp.route("")
class Queries(MethodView):
    @create_endpoint(nest_envelope)
    @project_headers
    @blp.arguments(QueryCreateSchema)
    @blp.response(201, QuerySchema)
    def post(self, item: dict[str, Any]) -> Query:
        """Create a query in the project"""
        session = request_session()
        project = projects.get_project(session, current_principal(), required_project_id())
        return projects.create_queries(session, project, [item])[0]


@blp.route("/many")
class QueriesMany(MethodView):
    @create_endpoint(nest_envelope)
    @project_headers
    @blp.arguments(QueryManySchema)
    @blp.response(201, QuerySchema(many=True))
    def post(self, body: dict[str, Any]) -> list[Query]:
        """Create many queries in the project"""
        session = request_session()
        project = projects.get_project(session, current_principal(), required_project_id())
        return projects.create_queries(session, project, body["queries"])


@blp.route("/list")
class QueryList(MethodView):
    @project_headers
    @blp.arguments(QueryPageArgs, location="query")
    @blp.arguments(QueryListFilterSchema)
    @blp.response(200, page_schema(QuerySchema))
    def post(self, paging: dict[str, Any], filters: dict[str, Any]) -> dict[str, Any]:
        """List the project's queries, filtered and sorted"""
        session = request_session()
        project = projects.get_project(session, current_principal(), required_project_id())
        page = projects.list_queries(
            session,
            project,
            text=filters.get("query"),
            languages=filters["languages"],
            countries=filters["countries"],
            sort=[(s["field"], s["direction"]) for s in filters["sort"]],
            limit=paging["limit"],
            page=paging["page"],
        )
        return page_envelope(page)


@blp.route("/<uuid:query_id>")
class QueryById(MethodView):
    @context_headers
    @blp.response(200, QuerySchema)
    def get(self, query_id: uuid.UUID) -> Query:
        """Get one query"""
        session = request_session()
        return projects.get_query(session, current_principal(), query_id)
