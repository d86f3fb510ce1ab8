"""``/knowledge_bases``: create, read, delete and search knowledge bases."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import authenticate_request, current_principal
from api.idempotency import create_endpoint
from api.params import WholeNumber
from api.smartdb import schemas
from api.smartdb.envelope import error_envelope, ok
from api.transaction import request_session
from shared.errors import UpstreamFailed
from shared.kb import knowledge
from shared.kb.embedders import EMBEDDERS, EmbeddingFailed, available
from shared.kb.models import KnowledgeBase
from shared.kb.sources import NAME

blp = Blueprint(
    "smartdb-knowledge-bases", __name__, url_prefix="/knowledge_bases", description="KBs"
)


@blp.before_request
def authenticate_first() -> None:
    authenticate_request()


# Names of KBs and columns, as shared.kb.knowledge checks them (stated for the spec).
NAMED = {"pattern": NAME.pattern}


class CreateKbSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=63), metadata=NAMED)
    embedder = fields.String(
        load_default="hashing",
        validate=validate.OneOf(list(EMBEDDERS)),
        metadata={"available_choices": available},
    )
    id_column = fields.String(
        validate=validate.Length(min=1, max=63), allow_none=True, metadata=NAMED
    )
    metadata_columns = fields.List(
        fields.String(validate=validate.Length(min=1, max=63), metadata=NAMED),
        load_default=list,
        validate=validate.Length(max=50),
    )


class SearchSchema(Schema):
    query = fields.String(required=True, validate=validate.Length(min=1, max=10_000))
    limit = WholeNumber(load_default=10, validate=validate.Range(min=1, max=1000))
    relevance_threshold = fields.Float(
        load_default=None, allow_none=True, validate=validate.Range(min=0, max=1)
    )
    filters = fields.Dict(
        keys=fields.String(), load_default=dict, metadata={"description": "metadata equals"}
    )


def describe(kb: KnowledgeBase, chunks: int | None = None) -> dict[str, Any]:
    answer = {
        "name": kb.name,
        "embedder": kb.embedder,
        "dimensions": kb.dimensions,
        "id_column": kb.id_column,
        "metadata_columns": kb.metadata_columns,
        "created_at": kb.created_at.isoformat().replace("+00:00", "Z"),
    }
    if chunks is not None:
        answer["chunks"] = chunks
    return answer


@blp.route("")
class KnowledgeBases(MethodView):
    @create_endpoint(error_envelope)
    @blp.arguments(CreateKbSchema)
    @blp.response(201, schemas.KnowledgeBaseAnswer)
    @blp.alt_response(
        400, description="INVALID_REQUEST: a bad field, or an embedder not available here"
    )
    @blp.alt_response(409, description="DUPLICATE_KB: the name is taken")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a knowledge base"""
        session = request_session()
        kb = knowledge.create_kb(
            session,
            current_principal().organisation_id,
            name=body["name"],
            embedder_name=body["embedder"],
            id_column=body.get("id_column"),
            metadata_columns=body["metadata_columns"],
        )
        return ok(describe(kb, 0), "Knowledge base created successfully")

    @blp.response(200, schemas.KnowledgeBaseListAnswer)
    def get(self) -> dict[str, Any]:
        """List the knowledge bases"""
        session = request_session()
        kbs = knowledge.list_kbs(session, current_principal().organisation_id)
        return ok([describe(kb) for kb in kbs], "Knowledge bases retrieved successfully")


@blp.route("/<name>")
class KnowledgeBaseByName(MethodView):
    @blp.response(200, schemas.KnowledgeBaseAnswer)
    def get(self, name: str) -> dict[str, Any]:
        """One knowledge base, with its chunk count"""
        session = request_session()
        kb = knowledge.get_kb(session, current_principal().organisation_id, name)
        return ok(
            describe(kb, knowledge.chunk_count(session, kb)),
            "Knowledge base retrieved successfully",
        )

    @blp.response(200, schemas.KnowledgeBaseDeletedAnswer)
    def delete(self, name: str) -> dict[str, Any]:
        """Delete a knowledge base and its chunks"""
        session = request_session()
        knowledge.delete_kb(session, current_principal().organisation_id, name)
        return ok({"name": name}, "Knowledge base deleted successfully")


@blp.route("/<name>/search")
class Search(MethodView):
    @blp.arguments(SearchSchema)
    @blp.response(200, schemas.SearchAnswer)
    @blp.alt_response(502, description="EMBEDDING_FAILED: the KB's embedder could not embed")
    def post(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """Search by cosine similarity; metadata filters apply before ranking"""
        session = request_session()
        kb = knowledge.get_kb(session, current_principal().organisation_id, name)
        try:
            found = knowledge.search(
                session,
                kb,
                body["query"],
                limit=body["limit"],
                relevance_threshold=body["relevance_threshold"],
                filters=body["filters"],
            )
        except EmbeddingFailed as exc:  # the endpoint's fault, not the request's
            raise UpstreamFailed(
                f"the query could not be embedded: {exc.reason}", code="EMBEDDING_FAILED"
            ) from exc
        return ok(found, f"{len(found)} result(s)")
