"""The scriptable HTTP server under every vendor fake: a real socket on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.fakes.behaviours import (
    Behaviour,
    Disconnect,
    Empty,
    Fail,
    Hang,
    Malformed,
    RateLimited,
    Raw,
    Refusal,
    Reply,
    Truncated,
)

#: The credential every fake accepts unless told otherwise (``FakeX(api_key=...)``).
FAKE_API_KEY = "test-key-0123456789"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: Any  # the parsed body, or None when it is not JSON
    received_at: float  # time.time() on arrival
    received_monotonic: float  # time.monotonic() on arrival (for measuring gaps)

    @property
    def api_key(self) -> str | None:
        """The credential sent, whichever way the vendor takes it (bearer, x-api-key,
        x-goog-api-key, ?key=)."""
        authorization = self.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return authorization[7:]
        for name in ("x-api-key", "x-goog-api-key"):
            if name in self.headers:
                return self.headers[name]
        keys = self.query.get("key")
        return keys[0] if keys else None


@dataclass(frozen=True)
class Response:
    """What the fake sends back."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        extra = tuple((headers or {}).items())
        return cls(
            status, json.dumps(payload).encode(), (("Content-Type", "application/json"), *extra)
        )


def retry_headers(behaviour: RateLimited) -> dict[str, str]:
    """The wait a 429 asks for, as headers (``Retry-After`` and/or ``retry-after-ms``)."""
    headers = {}
    if behaviour.retry_after is not None:
        headers["Retry-After"] = behaviour.retry_after
    if behaviour.retry_after_ms is not None:
        headers["retry-after-ms"] = behaviour.retry_after_ms
    return headers


class FakeServer:
    """A threaded HTTP server that answers each request with the next scripted behaviour.

    Subclasses speak one vendor's format: they say which requests they serve
    (:meth:`serves`) and render the vendor-specific behaviours (:meth:`reply`,
    :meth:`error`, :meth:`refusal`, :meth:`empty`).
    """

    #: What :attr:`base_url` adds to the server's root URL (e.g. ``/v1`` for OpenAI).
    prefix = ""

    def __init__(self, *, default: Behaviour | None = None, api_key: str = FAKE_API_KEY) -> None:
        self.default: Behaviour = default if default is not None else Reply()
        self.api_key = api_key
        self._queue: deque[Behaviour] = deque()
        self._requests: list[RecordedRequest] = []
        self._answers: list[Behaviour | Response | None] = []  # what each request got, same order
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self.connections_opened = 0  # TCP connections accepted (kept-alive ones count once)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"server_fake": self})
        httpd = _Server(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # wake handlers blocked on kept-alive connections
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the test's API --------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root, ``http://127.0.0.1:<port>``."""
        assert self._httpd is not None, "start the fake first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """What to configure as the vendor's base URL."""
        return self.url + self.prefix

    def script(self, behaviours: Iterable[Behaviour]) -> None:
        """Queue behaviours for the next requests, in order; after them, :attr:`default`."""
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        """Forget queued behaviours and recorded requests."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._answers.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """How many scripted behaviours are still queued."""
        with self._lock:
            return len(self._queue)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests arrived (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._requests)} of {count} requests arrived")
                self._arrived.wait(left)
            return list(self._requests)

    # -- vendor hooks ---------------------------------------------------------------

    def serves(self, request: RecordedRequest) -> bool:
        """Whether ``request`` is one this vendor's API would accept (else 404)."""
        return request.method == "POST"

    def rejection(self, request: RecordedRequest) -> Response | None:
        """The vendor's answer to a request it would refuse before doing any work (a
        missing or wrong credential, a missing header or field, an unknown model), or None.
        A rejected request consumes no scripted behaviour."""
        return None

    def behaviour_for(self, request: RecordedRequest) -> Behaviour:
        """What answers ``request``: the next scripted behaviour, else :attr:`default`
        (called under the fake's lock, in arrival order; a fake may choose by the request
        instead)."""
        return self._queue.popleft() if self._queue else self.default

    def side_route(self, request: RecordedRequest) -> Response | None:
        """An answer for a path that is not the API itself (e.g. a redirect link the
        vendor hands out), or None. Consumes no behaviour and is not recorded."""
        return None

    def truncated(self, behaviour: Truncated, request: RecordedRequest) -> Response:
        raise NotImplementedError

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        raise NotImplementedError

    def error(
        self, status: int, message: str, headers: dict[str, str], request: RecordedRequest
    ) -> Response:
        return Response.json(status, {"error": {"message": message}}, headers)

    def rate_limited(self, behaviour: RateLimited, request: RecordedRequest) -> Response:
        return self.error(429, behaviour.message, retry_headers(behaviour), request)

    def refusal(self, behaviour: Refusal, request: RecordedRequest) -> Response:
        raise NotImplementedError

    def empty(self, request: RecordedRequest) -> Response:
        raise NotImplementedError

    # -- internals ------------------------------------------------------------------

    def exchanges(self) -> list[tuple[RecordedRequest, Behaviour | Response | None]]:
        """Every request with the behaviour it was answered with (None: not served)."""
        with self._lock:
            return list(zip(self._requests, self._answers, strict=True))

    def _record(self, request: RecordedRequest) -> Behaviour | Response | None:
        """Record ``request``; what to answer: a behaviour, a rejection, None (no route)."""
        rejection = self.rejection(request) if self.serves(request) else None
        with self._arrived:
            behaviour: Behaviour | Response | None = rejection
            if self.serves(request) and rejection is None:
                behaviour = self.behaviour_for(request)
            self._requests.append(request)
            self._answers.append(behaviour)
            self._arrived.notify_all()
            return behaviour

    def _render(self, behaviour: Behaviour, request: RecordedRequest) -> Response | None:
        """The response for ``behaviour`` (None: drop the connection)."""
        match behaviour:
            case Reply():
                return self.reply(behaviour, request)
            case RateLimited():
                return self.rate_limited(behaviour, request)
            case Fail(status=status, message=message, headers=headers):
                return self.error(status, message, dict(headers), request)
            case Hang(seconds=seconds, then=then):
                if self._stopping.wait(seconds):
                    return None
                return self._render(then, request)
            case Malformed(body=body, status=status, content_type=content_type):
                return Response(status, body, (("Content-Type", content_type),))
            case Empty():
                return self.empty(request)
            case Truncated():
                return self.truncated(behaviour, request)
            case Refusal():
                return self.refusal(behaviour, request)
            case Disconnect():
                return None
            case Raw(status=status, body=body, headers=headers):
                if isinstance(body, bytes):
                    return Response(status, body, tuple(headers.items()))
                return Response.json(status, body, dict(headers))
        raise TypeError(f"unknown behaviour {behaviour!r}")


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: a client opening more connections at once (a
    # webhook sender's round, an SDK's pool) has the others' SYNs dropped and resent a
    # second later, which a real server's backlog would not do.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    timeout = 30  # an idle kept-alive connection is closed after this long
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms ACK stalls)
    server_fake: FakeServer

    def setup(self) -> None:
        super().setup()
        with self.server_fake._lock:
            self.server_fake._connections.add(self.connection)
            self.server_fake.connections_opened += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server_fake._lock:
                self.server_fake._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        fake = self.server_fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        split = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            json=parsed,
            received_at=time.time(),
            received_monotonic=time.monotonic(),
        )
        response: Response | None = fake.side_route(request)
        if response is None:
            behaviour = fake._record(request)
            if behaviour is None:
                response = fake.error(404, f"no route for {self.command} {split.path}", {}, request)
            elif isinstance(behaviour, Response):
                response = behaviour
            else:
                response = fake._render(behaviour, request)
        if response is None:
            self.close_connection = True
            return
        try:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:  # the client gave up (a timeout): nothing to tell it
            self.close_connection = True

    do_POST = _handle
    do_GET = _handle
    do_HEAD = _handle
