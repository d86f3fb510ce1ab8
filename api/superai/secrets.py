"""``/v1/webhooks/secret``: the organisation's callback signing secret (Standard Webhooks)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

import api.superai.schemas as schemas
from api.auth import authenticate_request, current_principal
from api.idempotency import create_endpoint
from api.superai.envelope import error_envelope
from shared.db import session_scope
from shared.webhooks import secrets

blp = Blueprint(
    "superai-webhooks", __name__, url_prefix="/v1/webhooks", description="Callback signing"
)


@blp.before_request
def authenticate_first() -> None:
    authenticate_request()


@blp.route("/secret")
class Secret(MethodView):
    @create_endpoint(error_envelope)
    @blp.response(201, schemas.SecretSchema)
    def post(self) -> dict[str, Any]:
        """Create (or rotate) the signing secret; it is shown this once. The previous ones
        keep signing for 24 h."""
        with session_scope() as session:
            organisation_id = current_principal().organisation_id
            previous = secrets.signing_secrets(session, organisation_id, secrets.utcnow())
            created = secrets.rotate(session, organisation_id)
            expiry = created.created_at + secrets.ROTATION_OVERLAP if previous else None
            return {
                "secret": created.secret,
                "createdAt": schemas.iso(created.created_at),
                "previousSecretsExpireAt": schemas.iso(expiry),
            }
