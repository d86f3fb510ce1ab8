"""super.AI's error answers: ``{statusCode, message, details}`` (details: one line per
failing field of a validation error)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields


class SuperAiError(Schema):
    """The error envelope, as the spec documents it."""

    statusCode = fields.Integer(required=True)
    message = fields.String(required=True)
    details = fields.List(
        fields.String(), required=True, metadata={"description": "One line per failing field"}
    )


def error_envelope(
    status: int, message: str, details: list[str], code: str | None = None
) -> dict[str, Any]:
    return {"statusCode": status, "message": message, "details": details}
