"""super.AI's error answers: ``{statusCode, message, details}`` (details: one line per
failing field of a validation error)."""

from __future__ import annotations

from typing import Any


def error_envelope(
    status: int, message: str, details: list[str], code: str | None = None
) -> dict[str, Any]:
    return {"statusCode": status, "message": message, "details": details}
