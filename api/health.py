"""``GET /healthz``: 200 when the database and Redis answer, 503 otherwise."""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from shared.db import get_engine
from shared.settings import get_settings

blp = Blueprint("health", __name__)


def _check_database() -> str:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"down: {exc.__class__.__name__}"
    return "ok"


def _check_redis() -> str:
    try:
        client = redis.Redis.from_url(
            get_settings().redis_url, socket_timeout=1, socket_connect_timeout=1
        )
        client.ping()
        client.close()
    except Exception as exc:
        return f"down: {exc.__class__.__name__}"
    return "ok"


@blp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Report whether the database and the broker are reachable."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(
        status="ok" if healthy else "unavailable", checks=checks
    ), 200 if healthy else 503
