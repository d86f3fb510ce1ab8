"""The API's gunicorn worker class (``worker_class`` in deploy/gunicorn.conf.py).

gunicorn's gevent worker: one greenlet per connection, and the standard library patched
so that whatever would block (a socket read from a slow client, a wait on PostgreSQL or
Redis, a lock) lets the process's other greenlets run. On top of it:

- gunicorn's own refusals (a request line over its 8190 bytes, header fields beyond its
  limits, a malformed request), which it answers with an HTML page before the app sees
  the request, are answered by the app instead: in the family's JSON envelope, with the
  app's own message (a request line too long gets the 414 of ``JOBYARD_MAX_URL_BYTES``
  whatever its length). The family is the one of the path in the first bytes the
  client sent; where they hold no path (garbage, or a request pipelined behind
  another) it is the envelope of paths outside every family, ``{statusCode, message,
  error}`` (as for ``/healthz`` and unknown paths).
- After such an answer, what the client still sends is read and dropped (for at most
  ``LINGER_SECONDS``, and ``DRAIN_FACTOR`` times the body limit) before the connection
  closes: a close with unread data resets the connection, and a client still sending
  would see the reset instead of the answer.
- ``Connection: close`` in the app's answer (:mod:`api.request_body`, after refusing a
  body) is honoured; gunicorn otherwise drops it as a hop-by-hop header.

Importing this module must stay light: gunicorn's master imports it before it forks the
workers, and each worker patches the standard library only then. A database driver
imported earlier would keep blocking calls (psycopg chooses its wait function when it is
imported), so ``api/__init__`` imports the app lazily and the app is loaded in each
worker after the patch.
"""

from __future__ import annotations

import io
import socket
from typing import Any
from urllib.parse import unquote_to_bytes

import gevent
from gunicorn.http import errors as http_errors
from gunicorn.http.wsgi import base_environ
from gunicorn.workers import ggevent

from shared.settings import get_settings

HEAD_BYTES = 1024  # kept of each request: its request line's start names the path
LINGER_SECONDS = 2.0
DRAIN_FACTOR = 4  # as api/request_body.py's
SERVER_ERROR = (
    b'{"statusCode": 500, "message": "Internal server error", "error": "Internal Server Error"}'
)


class HeadRecordingSocket:
    """A client socket that keeps the first bytes each request brought (its request
    line), for the answer to an error gunicorn finds before the app has a request."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.head = b""

    def recv(self, size: int, *flags: int) -> bytes:
        data: bytes = self._sock.recv(size, *flags)
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        return data

    def next_request(self) -> None:
        """The request was answered (its body read: api/request_body.py): what comes next
        is the next request's start."""
        self.head = b""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def request_start(head: bytes) -> tuple[str, str] | None:
    """The method and path of a request line's start (the path cut to 256 bytes: its
    family is named by its start), or None when ``head`` is no request line."""
    method, _, rest = head.partition(b" ")
    target = rest.split(b" ", 1)[0].split(b"\r", 1)[0]
    if not (method.isalpha() and method.isupper() and len(method) <= 16):
        return None
    if not target.startswith(b"/"):
        return None
    path = unquote_to_bytes(target.split(b"?", 1)[0][:256])
    return method.decode("ascii"), path.decode("latin-1")


def refusal_of(exc: BaseException) -> tuple[int, str] | None:
    """The status and message the app answers for gunicorn's refusal ``exc`` (with the
    app's own limits and wording), or None when ``exc`` is no fault of the client's."""
    settings = get_settings()
    if isinstance(exc, http_errors.InvalidResponseHeader | http_errors.InvalidResponseHeaderName):
        return None  # the app's answer was wrong
    if isinstance(exc, http_errors.ConfigurationProblem):
        return None
    if isinstance(exc, http_errors.LimitRequestLine):
        return 414, f"Request URL longer than {settings.max_url_bytes} bytes"
    if isinstance(exc, http_errors.LimitRequestHeaders):
        if str(exc) == "limit request headers fields":
            return 431, f"More than {settings.max_header_count} request header fields"
        if str(exc) == "limit request headers fields size":
            return 431, f"A request header longer than {settings.max_header_bytes} bytes"
        return 431, "Request header fields too large"
    if isinstance(exc, http_errors.UnsupportedTransferCoding):
        return 501, f"Unsupported transfer coding: {exc}"[:200]
    if isinstance(exc, http_errors.ExpectationFailed):
        return 417, f"Unsupported expectation: {exc}"[:200]
    if isinstance(exc, http_errors.ForbiddenProxyRequest):
        return 403, "Request forbidden"
    if isinstance(exc, http_errors.ParseException):
        return 400, f"Malformed request: {exc}"[:200]
    return None


def honour_connection_close(app: Any) -> Any:
    """Wrap the WSGI app: an answer with ``Connection: close`` closes the connection.
    (gunicorn's ``start_response`` is a method of its Response, whose ``force_close``
    makes it send ``Connection: close`` and close after the answer.)"""

    def application(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if any(
                name.lower() == "connection" and value.strip().lower() == "close"
                for name, value in headers
            ):
                force_close = getattr(
                    getattr(start_response, "__self__", None), "force_close", None
                )
                if force_close is not None:
                    force_close()
            return start_response(status, headers, *exc_info)

        return app(environ, start)

    return application


class GeventWorker(ggevent.GeventWorker):
    """gunicorn's gevent worker whose every answer is the app's, in JSON (see above)."""

    wsgi: Any  # the app, set by load_wsgi()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = honour_connection_close(self.wsgi)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        # A TLS socket stays as it is (gunicorn checks its type); none is used here: TLS
        # ends at the load balancer. Its errors then get the envelope of no family.
        if not self.cfg.is_ssl:
            client = HeadRecordingSocket(client)
        super().handle(listener, client, addr)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            if isinstance(sock, HeadRecordingSocket):
                sock.next_request()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer an error gunicorn met outside the app (replaces its HTML page)."""
        addr = addr or ("", -1)  # a unix socket
        refusal = refusal_of(exc)
        if refusal is None:
            self.log.exception("Error handling request", exc_info=exc)
            answer = _raw_answer("500 Internal Server Error", [], SERVER_ERROR)
        else:
            self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
            head = client.head if isinstance(client, HeadRecordingSocket) else b""
            try:
                answer = self.refusal_answer(*refusal, head, addr)
            except Exception:
                self.log.exception("Could not render the answer to: %s", exc)
                answer = _raw_answer("500 Internal Server Error", [], SERVER_ERROR)
        try:
            client.sendall(answer)
            self.linger(client)
        except OSError:
            self.log.debug("Failed to send error message.")

    def refusal_answer(self, status: int, message: str, head: bytes, addr: Any) -> bytes:
        """The app's answer to a request gunicorn refused: a request to the path the
        client named (if any), that the app refuses at once (api/request_body.py)."""
        from werkzeug.exceptions import default_exceptions

        from api.request_body import REFUSED

        method, path = request_start(head) or ("GET", "/")
        environ = base_environ(self.cfg)
        environ.update(
            {
                "REQUEST_METHOD": method,
                "SCRIPT_NAME": "",
                "PATH_INFO": path,
                "QUERY_STRING": "",
                "SERVER_NAME": "localhost",
                "SERVER_PORT": "0",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REMOTE_ADDR": str(addr[0]),
                "REMOTE_PORT": str(addr[1]),
                "CONTENT_LENGTH": "0",
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(),
                REFUSED: default_exceptions[status](message),
            }
        )
        answered: dict[str, Any] = {}

        def start_response(status_line: str, headers: list[tuple[str, str]], *_: Any) -> None:
            answered.update(status=status_line, headers=headers)

        body_parts = self.wsgi(environ, start_response)
        try:
            body = b"".join(body_parts)
        finally:
            if hasattr(body_parts, "close"):
                body_parts.close()
        return _raw_answer(answered["status"], answered["headers"], body)

    def linger(self, client: Any) -> None:
        """Read and drop what the client still sends (within bounds), so that the close
        does not reset the connection before the client has read the answer."""
        limit = DRAIN_FACTOR * get_settings().max_request_bytes
        received = 0
        try:
            client.shutdown(socket.SHUT_WR)
            with gevent.Timeout(LINGER_SECONDS, False):
                while received < limit:
                    data = client.recv(64 * 1024)
                    if not data:
                        break
                    received += len(data)
        except OSError:
            pass


def _raw_answer(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """An HTTP/1.1 answer that closes the connection."""
    hop_by_hop = {"connection", "content-length", "transfer-encoding", "keep-alive"}
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in hop_by_hop]
    if not any(name.lower() == "content-type" for name, _ in headers):
        lines.append("Content-Type: application/json")
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
