"""Valpay's answers: ``{success, data, message}``; a 401 is the documented fixed body."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields


class ValpayErrorData(Schema):
    errors = fields.List(fields.String(), required=True)


class ValpayError(Schema):
    """The error envelope, as the spec documents it: ``{success: false, data, message}``,
    or for a 401 the documented ``{statusCode: 401, message}``."""

    success = fields.Boolean(metadata={"enum": [False]})
    data = fields.Nested(
        ValpayErrorData,
        allow_none=True,
        metadata={"description": "A validation error's failing fields, else null"},
    )
    message = fields.String(required=True)
    statusCode = fields.Integer(metadata={"description": "401 only"})
    details = fields.List(
        fields.String(),
        metadata={
            "description": "Only in the 401 of /v1/jobs/{jobId} without any credential: "
            "super.AI's data points share that path, so its message names both ways in "
            "(Authorization: Bearer, or super.AI's API-KEY) in a body both APIs document"
        },
    )


UNAUTHORIZED = {"statusCode": 401, "message": "Unauthorized - Invalid or missing token"}


def ok(data: Any, message: str) -> dict[str, Any]:
    return {"success": True, "data": data, "message": message}


def error_envelope(
    status: int, message: str, details: list[str], code: str | None = None
) -> dict[str, Any]:
    """Errors: ``{success: false, data: null, message}`` (validation errors list each
    failing field in ``data.errors``); 401 ``{statusCode: 401, message}`` as documented."""
    if status == 401:
        return dict(UNAUTHORIZED)
    data = {"errors": details} if details else None
    return {"success": False, "data": data, "message": message}
