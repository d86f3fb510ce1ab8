"""Shared assertions and database look-ups for the API tests."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from shared.db import session_scope
from shared.models import Job
from shared.settings import get_settings

SEED_MODELS = ["gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash"]
SEED_BODY: dict[str, Any] = {"aiModels": SEED_MODELS, "executionCount": 3}
ISO_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MISSING_CREDENTIALS = "Missing credentials: send x-api-key or Authorization: Bearer <token>"
BAD_TOKEN = "Invalid or expired token"
PAGE_RANGE = "page: Must be greater than or equal to 1 and less than or equal to 2147483647."


def assert_error(response: TestResponse, status: int, message: str | list[str]) -> None:
    """The response is exactly the NestJS error envelope with this status and message."""
    phrases = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Request Entity Too Large",
        422: "Unprocessable Entity",
    }
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json == {"statusCode": status, "message": message, "error": phrases[status]}


def validation_messages(response: TestResponse) -> list[str]:
    """The ``field: reason`` lines of a 400 validation envelope."""
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.json
    assert body is not None
    assert set(body) == {"statusCode", "message", "error"}
    assert body["statusCode"] == 400 and body["error"] == "Bad Request"
    assert isinstance(body["message"], list) and body["message"]
    assert all(isinstance(line, str) for line in body["message"])
    lines: list[str] = body["message"]
    return lines


def assert_recent_timestamp(value: str) -> None:
    """``value`` is written like ``2026-06-08T12:00:00.000Z`` and is (UTC) now."""
    assert ISO_MILLIS.match(value), value
    moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=2), value


def job_count(organisation_id: uuid.UUID) -> int:
    """How many job rows the organisation has."""
    with session_scope() as session:
        count = session.scalar(
            select(func.count()).select_from(Job).where(Job.organisation_id == organisation_id)
        )
    return count or 0


def make_token(
    user_id: uuid.UUID | str,
    org_id: uuid.UUID | str,
    *,
    secret: str | None = None,
    expires_in: timedelta = timedelta(hours=1),
    algorithm: str = "HS256",
    drop: tuple[str, ...] = (),
) -> str:
    """A JWT built with PyJWT, signed with the app's secret unless told otherwise."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "org": str(org_id),
        "iat": int(now.timestamp()),
        "exp": int((now + expires_in).timestamp()),
    }
    for name in drop:
        claims.pop(name)
    key = secret if secret is not None else get_settings().secret_key
    return jwt.encode(claims, key, algorithm=algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
