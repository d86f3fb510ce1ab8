"""Mentionlab's error envelope (NestJS): ``{statusCode, message, error}``."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from api.errors import phrase


class NestError(Schema):
    """The error envelope, as the spec documents it."""

    statusCode = fields.Integer(required=True)
    message = fields.Raw(
        required=True,
        metadata={
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "What went wrong; a validation error lists every failing field",
        },
    )
    error = fields.String(required=True, metadata={"description": "The status' reason phrase"})


def nest_envelope(
    status: int, message: str, details: list[str], code: str | None = None
) -> dict[str, Any]:
    """Validation errors list every failing field in ``message``, as NestJS does."""
    return {
        "statusCode": status,
        "message": details if details and status == 400 else message,
        "error": phrase(status),
    }
