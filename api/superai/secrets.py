"""``/v1/webhooks/secret``: the organisation's callback signing secret (Standard Webhooks).

Every organisation has one from the start (callbacks are never sent unsigned); its owner
reads it here at any time, like Svix's endpoint secret, and rotates it."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

import api.superai.schemas as schemas
from api.auth import authenticate_request, current_principal
from api.idempotency import create_endpoint
from api.superai.envelope import error_envelope
from api.transaction import request_session
from shared.webhooks import secrets

blp = Blueprint(
    "superai-webhooks", __name__, url_prefix="/v1/webhooks", description="Callback signing"
)


@blp.before_request
def authenticate_first() -> None:
    authenticate_request()


def secret_answer(current: secrets.CurrentSecret) -> dict[str, Any]:
    return {
        "secret": current.secret.secret,
        "createdAt": schemas.iso(current.secret.created_at),
        "previousSecretsExpireAt": schemas.iso(current.previous_expire_at),
    }


@blp.route("/secret")
class Secret(MethodView):
    @blp.response(200, schemas.SecretSchema)
    def get(self) -> dict[str, Any]:
        """The signing secret every callback is signed with (the organisation has one from
        the start)"""
        session = request_session()
        return secret_answer(secrets.current(session, current_principal().organisation_id))

    @create_endpoint(error_envelope)
    @blp.response(201, schemas.SecretSchema)
    def post(self) -> dict[str, Any]:
        """Rotate the signing secret: a new one signs from now on, and the previous ones
        keep signing for 24 h"""
        session = request_session()
        return secret_answer(secrets.rotate(session, current_principal().organisation_id))
