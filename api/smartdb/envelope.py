"""Smart DB's answers: ``{success: true, message, data}``, and errors
``{success: false, error: {code, message, details}}`` with the seed's codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask_smorest import Blueprint
from marshmallow import Schema, fields

F = TypeVar("F", bound=Callable[..., Any])

# The code of an error that carries none of its own, by status.
CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "INVALID_REQUEST",
    409: "CONFLICT",
    413: "INVALID_REQUEST",
    414: "INVALID_REQUEST",
    415: "INVALID_REQUEST",
    431: "INVALID_REQUEST",
    429: "LIMIT_EXCEEDED",
    503: "SERVICE_UNAVAILABLE",
}


class SmartDbErrorDetail(Schema):
    code = fields.String(required=True, metadata={"example": "INVALID_REQUEST"})
    message = fields.String(required=True)
    details = fields.List(fields.String(), required=True)


class SmartDbError(Schema):
    """The error envelope, as the spec documents it."""

    success = fields.Boolean(required=True, metadata={"enum": [False]})
    error = fields.Nested(SmartDbErrorDetail, required=True)


def ok(data: Any, message: str) -> dict[str, Any]:
    return {"success": True, "message": message, "data": data}


def error_envelope(
    status: int, message: str, details: list[str], code: str | None = None
) -> dict[str, Any]:
    return {
        "success": False,
        "error": {
            "code": code or CODES.get(status, "INTERNAL_ERROR"),
            "message": message,
            "details": details,
        },
    }


def documents_check_refusals(blp: Blueprint) -> Callable[[F], F]:
    """The answers of an operation that checks a source connection first: 429 when the
    organisation runs as many checks as it may, 503 when they cannot be counted."""

    def decorate(view: F) -> F:
        view = blp.alt_response(
            429,
            description="LIMIT_EXCEEDED: the organisation runs as many connection checks as "
            "it may at once (JOBYARD_SOURCE_CHECKS_PER_ORGANISATION); retry after Retry-After",
        )(view)
        return blp.alt_response(
            503, description="SERVICE_UNAVAILABLE: connection checks cannot be counted now"
        )(view)

    return decorate
