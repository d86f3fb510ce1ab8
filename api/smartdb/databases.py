"""``/databases``: the source databases sync jobs read from."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import authenticate_request, current_principal
from api.idempotency import create_endpoint
from api.smartdb import schemas
from api.smartdb.envelope import documents_check_refusals, error_envelope, ok
from api.transaction import request_session
from shared.kb import sources
from shared.kb.models import DataSource

blp = Blueprint("smartdb-databases", __name__, url_prefix="/databases", description="Sources")


@blp.before_request
def authenticate_first() -> None:
    authenticate_request()


class CreateDatabaseSchema(Schema):
    name = fields.String(
        required=True,
        validate=validate.Length(min=1, max=63),
        metadata={"description": "How sync jobs name it: source_table is <name>.<table>"},
    )
    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=4096),
        metadata={
            "description": "A SQLAlchemy URL: postgresql://user:pass@host/db, "
            "mysql://... (with PyMySQL), sqlite:///path (development only). One host; "
            "query options only: sslmode, sslrootcert, sslcert, sslkey, connect_timeout, "
            "client_encoding (PostgreSQL); ssl_ca, ssl_cert, ssl_key, ssl_verify_cert, "
            "ssl_verify_identity, charset, connect_timeout (MySQL); none (SQLite). "
            "Stored encrypted; never answered back"
        },
    )


def describe(source: DataSource) -> dict[str, Any]:
    """A source as answered: never its URL or credentials."""
    return {
        "name": source.name,
        "engine": source.engine,
        "host": source.host,
        "database": source.database,
        "created_at": source.created_at.isoformat().replace("+00:00", "Z"),
    }


@blp.route("")
class Databases(MethodView):
    @create_endpoint(error_envelope)
    @blp.arguments(CreateDatabaseSchema)
    @blp.response(201, schemas.DatabaseAnswer)
    @blp.alt_response(
        400,
        description="INVALID_REQUEST: a bad name or URL (an option not accepted is named), "
        "or no answer within JOBYARD_SOURCE_CHECK_SECONDS",
    )
    @blp.alt_response(409, description="DUPLICATE_DATABASE: the name is taken")
    @documents_check_refusals(blp)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Register a source database (the connection is checked first)"""
        session = request_session()
        source = sources.register(
            session, current_principal().organisation_id, body["name"], body["url"]
        )
        return ok(describe(source), "Database created successfully")

    @blp.response(200, schemas.DatabaseListAnswer)
    def get(self) -> dict[str, Any]:
        """List the registered databases"""
        session = request_session()
        listed = sources.list_sources(session, current_principal().organisation_id)
        return ok([describe(s) for s in listed], "Databases retrieved successfully")


@blp.route("/<name>")
class DatabaseByName(MethodView):
    @blp.response(200, schemas.DatabaseAnswer)
    def get(self, name: str) -> dict[str, Any]:
        """One registered database"""
        session = request_session()
        source = sources.get_source(session, current_principal().organisation_id, name)
        return ok(describe(source), "Database retrieved successfully")

    @blp.response(200, schemas.DatabaseDeletedAnswer)
    def delete(self, name: str) -> dict[str, Any]:
        """Forget a registered database"""
        session = request_session()
        sources.delete_source(session, current_principal().organisation_id, name)
        return ok({"name": name}, "Database deleted successfully")
