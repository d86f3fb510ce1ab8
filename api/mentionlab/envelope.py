"""Mentionlab's error envelope (NestJS): ``{statusCode, message, error}``."""

from __future__ import annotations

from typing import Any

from api.errors import phrase


def nest_envelope(
    status: int, message: str, details: list[str], code: str | None = None
) -> dict[str, Any]:
    """Validation errors list every failing field in ``message``, as NestJS does."""
    return {
        "statusCode": status,
        "message": details if details and status == 400 else message,
        "error": phrase(status),
    }
