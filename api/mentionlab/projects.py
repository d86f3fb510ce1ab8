"""``/api/projects``: the brands being watched."""

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
from api.mentionlab.schemas import ProjectCreateSchema, ProjectFieldsSchema, ProjectSchema
from api.transaction import request_session
from shared.mentionlab import projects
from shared.mentionlab.models import Project

blp = Blueprint(
    "mentionlab-projects", __name__, url_prefix="/api/projects", description="Projects (Mentionlab)"
)
blp.before_request(authenticate_first)


@blp.route("")
class Projects(MethodView):
    @create_endpoint(nest_envelope)
    @context_headers
    @blp.arguments(ProjectCreateSchema)
    @blp.response(201, ProjectSchema)
    def post(self, fields: dict[str, Any]) -> Project:
        """Create a project"""
        session = request_session()
        return projects.create_project(session, current_principal(), fields)

    @project_headers
    @blp.arguments(ProjectFieldsSchema)
    @blp.response(200, ProjectSchema)
    def patch(self, fields: dict[str, Any]) -> Project:
        """Update the project named by x-project-id"""
        session = request_session()
        return projects.update_project(session, current_principal(), required_project_id(), fields)


@blp.route("/list")
class ProjectList(MethodView):
    @context_headers
    @blp.response(200, ProjectSchema(many=True))
    def get(self) -> list[Project]:
        """List the organisation's projects"""
        session = request_session()
        return projects.list_projects(session, current_principal())


@blp.route("/<uuid:project_id>")
class ProjectById(MethodView):
    @context_headers
    @blp.response(200, ProjectSchema)
    def get(self, project_id: uuid.UUID) -> Project:
        """Get one project"""
        session = request_session()
        return projects.get_project(session, current_principal(), project_id)
