"""Request rate limits per credential, shared by every API process through Redis.

One bucket per credential across every endpoint (Flask-Limiter's application limits: a
client cannot multiply its allowance by spreading requests over endpoints).

A client over its limit gets 429 in its family's envelope, with ``Retry-After`` and the
``X-RateLimit-Limit/Remaining/Reset`` headers on every limited response. The limit is keyed
by the credential presented (an API key or a token; hashed, never stored in clear) and
falls back to the client address. When Redis is unreachable, limits are kept in memory
per process rather than failing requests.
"""

from __future__ import annotations

import hashlib

from flask import Flask, Response, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from shared.settings import get_settings

CREDENTIAL_HEADERS = ("x-api-key", "API-KEY", "Authorization")
UNLIMITED_PATHS = ("/healthz", "/openapi.json", "/docs")


def credential_key() -> str:
    """The bucket of this request: its credential's hash, else the client address."""
    for header in CREDENTIAL_HEADERS:
        value = request.headers.get(header)
        if value:
            return "cred:" + hashlib.sha256(value.encode()).hexdigest()[:32]
    return "addr:" + (get_remote_address() or "unknown")


def _exempt() -> bool:
    return request.path.startswith(UNLIMITED_PATHS)


def _note_own_retry_after(response: Response) -> Response:
    g.own_retry_after = response.headers.get("Retry-After")
    return response


def _restore_own_retry_after(response: Response) -> Response:
    own = g.pop("own_retry_after", None)
    if own is not None and response.status_code != 429:
        response.headers["Retry-After"] = own
    return response


def init_rate_limits(app: Flask) -> Limiter:
    """Give the app its limiter, configured from settings (app config overrides, e.g. tests).

    The limiter puts its ``Retry-After`` (when its window resets: up to a minute) on every
    answer, raising one the answer had to it. An answer that says when to retry for a
    reason of its own (a 503 while the database is gone: 5 s) keeps its own value: Flask
    runs ``after_request`` hooks in reverse order, so the note is taken before the
    limiter's hook and the value put back after it."""
    app.after_request(_restore_own_retry_after)  # runs after the limiter's
    settings = get_settings()
    app.config.setdefault("RATELIMIT_APPLICATION", settings.api_rate_limit)
    app.config.setdefault("RATELIMIT_STORAGE_URI", settings.redis_url)
    app.config.setdefault(
        "RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1}
    )
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "jobyard-ratelimit")
    app.config.setdefault("RATELIMIT_STRATEGY", "moving-window")
    limiter = Limiter(key_func=credential_key, app=app, application_limits_exempt_when=_exempt)
    app.after_request(_note_own_retry_after)  # runs before the limiter's
    return limiter
