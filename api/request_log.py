"""One log line per request: method, path, status, duration, and the ids it was about
(the caller's organisation; the job or jobs a create started), in the configured format."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from shared import logs

log = logging.getLogger("jobyard.api.request")

QUIET_PATHS = ("/healthz",)  # probed every few seconds: DEBUG, not INFO


def _start() -> None:
    # A thread serves many requests: each starts with no ids, and leaves none behind.
    g.log_context = logs.fresh()
    g.request_started = time.perf_counter()


def _end(_error: BaseException | None) -> None:
    token = g.pop("log_context", None)
    if token is not None:
        logs.reset(token)


def _log(response: Response) -> Response:
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started else None
    level = logging.DEBUG if request.path.startswith(QUIET_PATHS) else logging.INFO
    log.log(
        level,
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
        },
    )
    return response


def init_request_log(app: Flask) -> None:
    """Register first, so that the context is fresh before any other hook binds to it."""
    app.before_request(_start)
    app.after_request(_log)
    app.teardown_request(_end)
