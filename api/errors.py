"""Error envelopes: every API family answers errors in its own documented shape.

The family is chosen by path prefix (each family declares its prefixes and envelope in
its package: :mod:`api.families`), so even a 404 for an unknown path or a 405 answers in
the envelope its clients parse. (The dashboard at ``/ui/`` is no family: its errors are
pages, :func:`api.ui.error_page`.) Domain errors from ``shared`` and webargs' validation
errors are mapped here and nowhere else; nothing answers with a stack trace. A database
that cannot be reached is a 503 with ``Retry-After`` (:data:`DATABASE_UNAVAILABLE`), not
a 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import sqlalchemy.exc
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import RequestRedirect

from api.families import Envelope, RequestHeaders, family_for, sharing
from api.ui import error_page, is_ui_path
from shared.errors import DomainError, Unavailable

log = logging.getLogger(__name__)


def phrase(status: int) -> str:
    """The HTTP reason phrase of ``status`` ("Not Found")."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def default_envelope(
    status: int, message: str, details: list[str], code: str | None = None
) -> dict[str, Any]:
    """For paths of no family (``/healthz``, unknown paths): ``{statusCode, message, error}``."""
    return {"statusCode": status, "message": message, "error": phrase(status)}


def envelope_for(path: str, headers: RequestHeaders | None = None) -> Envelope:
    """The envelope of the family the request names (by path, and by credential where
    families share the path). A shared path without credential names none: it answers in
    the envelope of the family that keys it (super.AI's ``{statusCode, message,
    details}``, which also holds the ``{statusCode, message}`` of Valpay's 401)."""
    family = family_for(path, headers)
    if family is not None:
        return family.envelope
    shared = sharing(path)
    return shared.keyed[0].envelope if shared is not None else default_envelope


def error_response(
    status: int, message: str, details: list[str] | None = None, code: str | None = None
) -> Response:
    if is_ui_path(request.path):  # the dashboard's pages answer errors as pages
        return error_page(status, message)
    body = envelope_for(request.path, request.headers)(status, message, details or [], code)
    response = jsonify(body)
    response.status_code = status
    return response


def flatten_messages(messages: Any, prefix: str = "") -> list[str]:
    """Turn webargs/marshmallow nested messages into ``field.path: message`` lines."""
    if isinstance(messages, dict):
        lines: list[str] = []
        for key, value in messages.items():
            name = "" if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            lines += flatten_messages(value, name)
        return lines
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix}: {m}" if prefix else m for m in messages]
    if isinstance(messages, list):
        return [line for m in messages for line in flatten_messages(m, prefix)]
    return [f"{prefix}: {messages}" if prefix else str(messages)]


def handle_http_exception(exc: HTTPException) -> Response:
    data = getattr(exc, "data", None) or {}
    if "messages" in data:  # webargs validation failure (raised as 422 by flask-smorest)
        by_location = data["messages"]
        details = [
            line
            for location, messages in by_location.items()
            for line in flatten_messages(messages)
            if location in {"json", "query", "headers", "path", "form", "files"}
        ] or flatten_messages(by_location)
        return error_response(400, "Validation failed: " + "; ".join(details), details)
    status = exc.code or 500
    if status in (404, 405) and request.url_rule is None:  # no such route (NestJS wording)
        message = f"Cannot {request.method} {request.path}"
    elif status == 413:
        message = "Request body too large"
    elif status == 429:
        message = f"Rate limit exceeded: {exc.description}"
    elif status >= 500:
        message = phrase(status)
    else:
        message = exc.description or phrase(status)
    response = error_response(status, message)
    # The exception's own headers (a 405's Allow, a 429's Retry-After), not its HTML's type.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def handle_domain_error(exc: DomainError) -> Response:
    response = error_response(exc.http_status, exc.message, exc.details, exc.code)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


# The database could not be reached or went away under the request: PostgreSQL refused
# or dropped the connection (psycopg's OperationalError: a connection refused, a database
# not accepting connections, AdminShutdown when a backend is terminated, "the connection
# is closed" after that), or the pool had no connection to give in time (TimeoutError).
# SQLite's "database is locked" is an OperationalError too. Each is about the moment, not
# the request: a 503 that says when to retry, never a 500. The pool has thrown the dead
# connection away (and pings the others before use: shared/db.py), so the next request
# gets a live one. (An InterfaceError is not one of them: psycopg 3 reports a lost
# connection as OperationalError, and sqlite3's InterfaceError is a parameter it cannot
# bind.)
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.TimeoutError,
)
DATABASE_RETRY_AFTER_SECONDS = 5


def handle_database_unavailable(exc: Exception) -> Response:
    """503 with Retry-After in the family's envelope; one warning line with the cause."""
    cause = getattr(exc, "orig", None) or exc
    log.warning(
        "database unavailable on %s %s, answered 503: %s: %s",
        request.method,
        request.path,
        type(cause).__name__,
        " ".join(str(cause).split())[:500],
    )
    return handle_domain_error(
        Unavailable(
            "The database is unavailable; retry in a few seconds",
            retry_after=DATABASE_RETRY_AFTER_SECONDS,
        )
    )


def no_redirects() -> None:
    """``before_request``: a path Werkzeug would redirect to its canonical form (``//``
    merged, a missing trailing slash) is a 404 like any path no route has. Flask answers
    a routing redirect itself, past every error handler: an HTML 308 page that no
    family's client parses, and that clients which do not resend a body on a redirect
    would follow without it."""
    if isinstance(request.routing_exception, RequestRedirect):
        request.routing_exception = NotFound()


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "Internal server error")


def register_error_handlers(app: Flask) -> None:
    """Install the handlers (after flask-smorest's, so ours win)."""
    app.before_request(no_redirects)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DomainError, handle_domain_error)
    for database_error in DATABASE_UNAVAILABLE:
        app.register_error_handler(database_error, handle_database_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
