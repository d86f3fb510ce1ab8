"""Request bodies are read whole, within deadlines, before the app sees them.

A WSGI middleware around the Flask app (:func:`init_request_body`). Under the API's
gunicorn worker (gevent: :mod:`api.gunicorn_worker`) a client that sends its body slowly
holds one greenlet while this reads it, never a thread, a database connection or a view:
the app only ever gets a body that has fully arrived, from memory.

- A body (``Content-Length`` or chunked) is read in at most
  ``JOBYARD_REQUEST_BODY_TIMEOUT_SECONDS``, waiting at most
  ``JOBYARD_REQUEST_BODY_IDLE_SECONDS`` for each piece of it: else 408. The idle deadline
  is the connection's socket timeout; the total one a ``gevent.Timeout`` (on a server
  without gevent, it is only checked between reads).
- A body over ``MAX_CONTENT_LENGTH`` is read on and thrown away, up to
  ``DRAIN_FACTOR`` times the limit, and then answered 413. A client that sends its whole
  body before it reads the answer (urllib, requests) so gets the 413: closing the
  connection with its data unread would reset it, and the client would see only the
  reset. A longer body (or a ``Content-Length`` that announces one) is refused at once.
- A body that cannot be read (a malformed chunked coding, a client gone) is a 400.

Each refusal is answered by the app itself (so it is logged, counted, and in the
family's envelope): a ``before_request`` hook raises it before anything else reads the
request. Its answer asks for ``Connection: close``, since what the client may still send
is not read (:mod:`api.gunicorn_worker` makes gunicorn honour it).
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    RequestEntityTooLarge,
    RequestTimeout,
)
from werkzeug.wsgi import get_content_length

from shared.settings import get_settings

# The environ key of a request the server refuses: the HTTPException the app answers
# instead of running the view (set here, and by api/gunicorn_worker.py for gunicorn's
# own refusals).
REFUSED = "jobyard.request_refused"
# How much of a body over the limit is read and dropped before the 413, in limits.
DRAIN_FACTOR = 4
READ_STEP = 64 * 1024

WSGIApp = Any  # (environ, start_response) -> iterable of bytes


class _TotalDeadlinePassed(Exception):
    """The body's total deadline passed while it was being read."""


@dataclass
class BodyRead:
    """What reading a request's body gave: the body, or the answer that refuses it."""

    data: bytes = b""
    refusal: HTTPException | None = None


def _gevent_patched() -> bool:
    """Whether this process runs under gevent's patched sockets (checked as psycopg does:
    without importing gevent when nothing else has)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


def _total_deadline(seconds: float) -> Any:
    if not _gevent_patched():
        return nullcontext()
    import gevent

    return gevent.Timeout(seconds, _TotalDeadlinePassed)


@contextmanager
def _idle_deadline(environ: dict[str, Any], seconds: float) -> Iterator[None]:
    """Each read from the client's socket waits at most ``seconds`` (gunicorn passes its
    socket in the environ; the timeout it had is restored afterwards)."""
    sock = environ.get("gunicorn.socket")
    if sock is None or not hasattr(sock, "settimeout"):
        yield
        return
    before = sock.gettimeout()
    sock.settimeout(seconds)
    try:
        yield
    finally:
        with suppress(OSError):  # the client is gone
            sock.settimeout(before)


def _has_body(environ: dict[str, Any]) -> bool:
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        # Only a server that delimits the chunked body itself can be read to its end.
        return bool(environ.get("wsgi.input_terminated"))
    return bool(get_content_length(environ))


def read_body(environ: dict[str, Any], limit: int, timeout: float, idle: float) -> BodyRead:
    """Read the request's whole body from the server (see the module docstring)."""
    length = get_content_length(environ)  # None: chunked
    drain_limit = limit * DRAIN_FACTOR
    if length is not None and length > drain_limit:
        return BodyRead(refusal=RequestEntityTooLarge())
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    received = 0
    deadline = time.monotonic() + timeout
    try:
        with _total_deadline(timeout), _idle_deadline(environ, idle):
            while length is None or received < length:
                step = READ_STEP if length is None else min(READ_STEP, length - received)
                data = stream.read(step)
                if not data:
                    break
                received += len(data)
                if received <= limit:
                    parts.append(data)
                elif received > drain_limit:
                    return BodyRead(refusal=RequestEntityTooLarge())
                if time.monotonic() > deadline:
                    raise _TotalDeadlinePassed
    except _TotalDeadlinePassed:
        return BodyRead(refusal=RequestTimeout(f"Request body not received within {timeout:g} s"))
    except TimeoutError:  # the socket's timeout: the idle deadline
        return BodyRead(refusal=RequestTimeout(f"Request body: no data received for {idle:g} s"))
    except Exception:  # the server's own parse errors (a bad chunk size...): any type
        return BodyRead(refusal=BadRequest("Malformed request body"))
    if length is not None and received < length:
        return BodyRead(refusal=BadRequest("Request body shorter than its Content-Length"))
    if received > limit:
        return BodyRead(refusal=RequestEntityTooLarge())
    return BodyRead(data=b"".join(parts))


class RequestBodyBuffer:
    """The WSGI middleware: the app runs once the body is in memory, or answers its
    refusal (:data:`REFUSED`) with ``Connection: close``."""

    def __init__(self, app: WSGIApp, limit: int, timeout: float, idle: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
        self.idle = idle

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not _has_body(environ):
            return self.app(environ, start_response)
        body = read_body(environ, self.limit, self.timeout, self.idle)
        environ["wsgi.input"] = io.BytesIO(body.data)
        environ["CONTENT_LENGTH"] = str(len(body.data))
        environ.pop("HTTP_TRANSFER_ENCODING", None)  # now delimited by its length
        if body.refusal is None:
            return self.app(environ, start_response)
        environ[REFUSED] = body.refusal

        def start_closing(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            return start_response(status, [*headers, ("Connection", "close")], *exc_info)

        return self.app(environ, start_closing)


def answer_refusal() -> None:
    """``before_request``: a request the server refused gets that answer, and no view."""
    refusal = request.environ.get(REFUSED)
    if refusal is not None:
        raise refusal


def init_request_body(app: Flask) -> None:
    settings = get_settings()
    app.wsgi_app = RequestBodyBuffer(  # type: ignore[method-assign]
        app.wsgi_app,
        limit=app.config.get("MAX_CONTENT_LENGTH") or settings.max_request_bytes,
        timeout=settings.request_body_timeout_seconds,
        idle=settings.request_body_idle_seconds,
    )
    app.before_request(answer_refusal)
