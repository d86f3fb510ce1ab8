"""The API as deployed: gunicorn with deploy/gunicorn.conf.py (its gevent worker,
api/gunicorn_worker.py) and the body buffer of api/request_body.py, spoken to over
real sockets.

- Slow clients hold no worker: with 100 slowloris connections open on one process,
  other requests answer within a second, and the slow ones end with a 408 in their
  family's envelope (or a closed connection, for headers that never end).
- Every limit a client meets answers in its family's JSON envelope: a request line over
  the app's limit, over gunicorn's 8190 bytes or over a megabyte; header fields beyond
  gunicorn's limits; a malformed request.
- A body over the limit sent whole before reading (``requests``) gets the 413, not a
  reset.
- A request waiting on a PostgreSQL row lock blocks no other request of its process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from sqlalchemy import select, text

from api.families import Family, discover
from shared.db import session_scope
from shared.mentionlab.models import Project
from tests.support import Tenant, make_tenant, running_api, uncredentialed_path, wait_until

FAMILIES = {family.name: family for family in discover()}
# A path of each family that takes a JSON body (the refusals come before routing and
# authentication: only the family matters).
BODY_PATHS = {
    "mentionlab": "/api/jobs/trigger",
    "superai": "/v1/apps/00000000-0000-0000-0000-000000000000/jobs",
    "valpay": "/v1/jobs",
    "smartdb": "/jobs/create",
}
BODY_SECONDS = 8  # JOBYARD_REQUEST_BODY_TIMEOUT_SECONDS of the server below
IDLE_SECONDS = 6  # JOBYARD_REQUEST_BODY_IDLE_SECONDS: above the slowloris' 4 s
KEEPALIVE_SECONDS = 5  # gunicorn's keepalive (its default here): the time headers may take
URL_BYTES = 4096  # JOBYARD_MAX_URL_BYTES
TOO_LONG_URL = f"Request URL longer than {URL_BYTES} bytes"


@dataclass
class Server:
    base_url: str
    port: int
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The Procfile's ``web`` line, one worker process, with short body deadlines."""
    directory = tmp_path_factory.mktemp("api")
    with running_api(
        directory,
        JOBYARD_REQUEST_BODY_TIMEOUT_SECONDS=BODY_SECONDS,
        JOBYARD_REQUEST_BODY_IDLE_SECONDS=IDLE_SECONDS,
    ) as base_url:
        yield Server(base_url, int(base_url.rsplit(":", 1)[1]), directory / "web.log")


# ------------------------------------------------------------------------------ raw HTTP


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_answer(conn: socket.socket) -> Answer | None:
    """Read one answer (its body by its Content-Length), or None if the server closed
    the connection without a byte."""
    data = b""
    try:
        while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
            data += chunk
    except ConnectionResetError:
        pass
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    while len(body) < int(headers["content-length"]) and (chunk := conn.recv(65536)):
        body += chunk
    assert len(body) == int(headers["content-length"]), data[:500]
    return Answer(int(status_line.split()[1]), headers, body)


def exchange(port: int, request: bytes) -> Answer | None:
    """Send a whole request (however long), then read the answer: as urllib does, so a
    server that closes with data unread resets the connection under the client."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(request)
        return read_answer(conn)


def family_body(family: Family, status: int, message: str) -> Any:
    return family.envelope(status, message, [], None)


# ------------------------------------------------------------------------------ slowloris


def open_slow_body(port: int, path: str) -> socket.socket:
    """A POST whose JSON body never finishes: its headers, then ``{``."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 64\r\n\r\n{".encode()
    )
    return conn


def open_slow_head(port: int) -> socket.socket:
    """A request whose headers never end."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    return conn


def trickle(conns: list[socket.socket], stop: threading.Event) -> None:
    """One more byte on every connection each 4 s, until ``stop``."""
    while not stop.wait(4):
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.send(b" ")


def other_requests(server: Server, tenant: Tenant) -> dict[str, tuple[str, dict[str, str]]]:
    """A request of each family (one that reads the database) and /healthz."""
    base = server.base_url
    bearer = {"Authorization": f"Bearer {tenant.token}"}
    return {
        "healthz": (f"{base}/healthz", {}),
        "mentionlab": (f"{base}/api/projects/list", tenant.headers(project=False)),
        "superai": (f"{base}/v1/apps/{tenant.project_id}/jobs", {"API-KEY": tenant.api_key}),
        "valpay": (f"{base}/v1/jobs?limit=10", bearer),
        "smartdb": (f"{base}/jobs", bearer),
    }


def time_requests(
    requests_by_name: dict[str, tuple[str, dict[str, str]]], until: float
) -> dict[str, float]:
    """Send each request in turn, each on a new connection, until ``until``: the slowest
    answer of each (every one a 200)."""
    slowest = dict.fromkeys(requests_by_name, 0.0)
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=5, limits=no_reuse) as client:
        while time.monotonic() < until:
            for name, (url, headers) in requests_by_name.items():
                started = time.monotonic()
                reply = client.get(url, headers=headers)
                elapsed = time.monotonic() - started
                assert reply.status_code == 200, (name, reply.status_code, reply.text)
                slowest[name] = max(slowest[name], elapsed)
            time.sleep(0.2)
    return slowest


def test_slow_clients_hold_no_worker(server: Server) -> None:
    """100 slowloris connections on the one worker process (88 bodies at a byte every
    4 s, 12 headers likewise): every other request still answers within a second; each
    slow body ends with a 408 in its family's envelope after the deadline, and each
    endless head with a closed connection after gunicorn's keepalive."""
    tenant = make_tenant()
    requests_by_name = other_requests(server, tenant)
    time_requests(requests_by_name, until=0)  # warm: nothing is timed
    names = itertools.islice(itertools.cycle(sorted(BODY_PATHS)), 88)
    bodies = [(name, open_slow_body(server.port, BODY_PATHS[name])) for name in names]
    heads = [open_slow_head(server.port) for _ in range(12)]
    try:
        check_slow_clients(server, requests_by_name, bodies, heads)
    finally:
        for conn in [c for _, c in bodies] + heads:
            conn.close()


def check_slow_clients(
    server: Server,
    requests_by_name: dict[str, tuple[str, dict[str, str]]],
    bodies: list[tuple[str, socket.socket]],
    heads: list[socket.socket],
) -> None:
    """Trickle on the slow connections while timing the other requests, then read how
    each slow one ended."""
    opened = time.monotonic()
    stop = threading.Event()
    trickler = threading.Thread(target=trickle, args=([c for _, c in bodies] + heads, stop))
    trickler.start()
    try:
        slowest = time_requests(requests_by_name, until=opened + BODY_SECONDS - 1)
    finally:
        stop.set()
        trickler.join()
    assert max(slowest.values()) < 1.0, slowest

    expected = f"Request body not received within {BODY_SECONDS} s"
    for name, conn in bodies:
        answer = read_answer(conn)
        ended = time.monotonic() - opened
        assert answer is not None, name
        assert (answer.status, answer.json()) == (
            408,
            family_body(FAMILIES[name], 408, expected),
        ), name
        assert answer.headers["connection"] == "close"
        assert ended >= BODY_SECONDS - 0.5, ended
    for conn in heads:
        assert read_answer(conn) is None
    assert time.monotonic() - opened < BODY_SECONDS + 5


def test_a_body_that_stops_arriving_is_408_after_the_idle_deadline(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        started = time.monotonic()
        conn.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"jobType": '
        )
        answer = read_answer(conn)
        waited = time.monotonic() - started
    message = f"Request body: no data received for {IDLE_SECONDS} s"
    assert answer is not None
    assert (answer.status, answer.json()) == (408, family_body(FAMILIES["valpay"], 408, message))
    assert IDLE_SECONDS - 0.5 <= waited < BODY_SECONDS, waited


# ------------------------------------------------------------------------------ limits


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("target_bytes", [URL_BYTES + 1, 9_000, 6_000_000])
def test_a_request_line_over_the_limit_is_the_apps_414_in_json(
    server: Server, name: str, target_bytes: int
) -> None:
    """Just over the app's limit (the app's own check), over gunicorn's 8190 bytes and
    over a megabyte (gunicorn's refusal, answered by the app): the same 414 in the
    family's envelope. The longest one is more than the kernel buffers between client
    and server hold: the client gets its answer only if the server reads the rest."""
    family = FAMILIES[name]
    path = uncredentialed_path(family, list(FAMILIES.values())) + "?q="
    target = path + "a" * (target_bytes - len(path))
    answer = exchange(server.port, f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert answer is not None
    assert (answer.status, answer.json()) == (414, family_body(family, 414, TOO_LONG_URL))
    assert answer.headers["content-type"] == "application/json"


def test_on_a_kept_alive_connection_the_refusal_names_the_new_requests_family(
    server: Server,
) -> None:
    """The second request of a connection, refused by gunicorn, is answered in its own
    family's envelope, not the first request's."""
    tenant = make_tenant()
    first = (
        f"GET /v1/jobs?limit=1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {tenant.token}\r\n\r\n"
    ).encode()
    second = f"GET /knowledge_bases?q={'a' * 9000} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as conn:
        conn.sendall(first)
        answer = read_answer(conn)
        assert answer is not None and answer.status == 200, answer
        conn.sendall(second)
        answer = read_answer(conn)
    assert answer is not None
    assert (answer.status, answer.json()) == (
        414,
        family_body(FAMILIES["smartdb"], 414, TOO_LONG_URL),
    )


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_headers_beyond_gunicorns_limits_are_431_in_json(server: Server, name: str) -> None:
    """Past gunicorn's own header limits (1.5 x JOBYARD_MAX_HEADER_BYTES per field, 1.5 x
    JOBYARD_MAX_HEADER_COUNT fields) the app answers, in the family's envelope."""
    family = FAMILIES[name]
    path = uncredentialed_path(family, list(FAMILIES.values()))
    long_field = f"GET {path} HTTP/1.1\r\nHost: t\r\nX-Padding: {'v' * 13_000}\r\n\r\n"
    answer = exchange(server.port, long_field.encode())
    assert answer is not None
    message = "A request header longer than 8190 bytes"
    assert (answer.status, answer.json()) == (431, family_body(family, 431, message))
    many = "".join(f"X-Extra-{i}: 1\r\n" for i in range(151))
    answer = exchange(server.port, f"GET {path} HTTP/1.1\r\nHost: t\r\n{many}\r\n".encode())
    assert answer is not None
    message = "More than 100 request header fields"
    assert (answer.status, answer.json()) == (431, family_body(family, 431, message))


def test_a_request_gunicorn_cannot_parse_is_400_in_json(server: Server) -> None:
    """No path to go by: the envelope of paths outside every family."""
    answer = exchange(server.port, b"\x16\x03\x01 garbage\r\n\r\n")
    assert answer is not None
    assert answer.status == 400
    body = answer.json()
    assert body["statusCode"] == 400 and body["error"] == "Bad Request", body
    assert body["message"].startswith("Malformed request"), body
    # A bad header of a request to a family: its envelope.
    answer = exchange(server.port, b"GET /v1/jobs HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
    assert answer is not None
    assert answer.status == 400
    assert answer.json()["success"] is False


@pytest.mark.parametrize("name", sorted(BODY_PATHS))
def test_a_body_over_the_limit_sent_whole_gets_the_413(server: Server, name: str) -> None:
    """``requests`` and ``urllib`` send the whole body before they read: the 4.5 MB body
    is read and dropped, and the client gets the 413 in its family's envelope, not a
    reset or a broken pipe. The same for a chunked body (a generator)."""
    url = server.base_url + BODY_PATHS[name]
    body = b'{"x": "' + b"a" * 4_500_000 + b'"}'
    expected = family_body(FAMILIES[name], 413, "Request body too large")
    headers = {"Content-Type": "application/json"}
    reply = requests.post(url, data=body, headers=headers, timeout=30)
    assert (reply.status_code, reply.json()) == (413, expected)
    assert reply.headers["Connection"] == "close"

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    reply = requests.post(url, data=pieces(), headers=headers, timeout=30)
    assert (reply.status_code, reply.json()) == (413, expected)

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=30)
    assert (refused.value.code, json.loads(refused.value.read())) == (413, expected)
    refused.value.close()


def test_chunked_bodies_reach_the_app_and_malformed_ones_are_400(server: Server) -> None:
    tenant = make_tenant()
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {tenant.token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    answer = exchange(server.port, head + b"2\r\n{}\r\n0\r\n\r\n")
    assert answer is not None  # read to its end: the app saw the body (a missing jobType)
    assert answer.status == 400 and "jobType" in answer.json()["message"], answer.body
    answer = exchange(server.port, head + b"zz\r\n{}\r\n0\r\n\r\n")
    assert answer is not None
    assert (answer.status, answer.json()) == (
        400,
        family_body(FAMILIES["valpay"], 400, "Malformed request body"),
    )


# ------------------------------------------------------------------------------ gevent


def test_a_wait_on_postgresql_blocks_no_other_request(server: Server) -> None:
    """One worker process: a PATCH waits on a row lock the test holds, and meanwhile
    other requests (which use the database too) answer at once. (A driver that blocked
    the process, such as psycopg's C wait imported before gevent's patch, would hold
    them all until the lock goes.)"""
    tenant = make_tenant()
    url = f"{server.base_url}/api/projects"
    patched: dict[str, Any] = {}

    def rename() -> None:
        reply = httpx.patch(url, headers=tenant.headers(), json={"name": "Renamed"}, timeout=30)
        patched.update(status=reply.status_code, body=reply.json())

    with session_scope() as session:
        session.execute(select(Project).where(Project.id == tenant.project_id).with_for_update())
        renamer = threading.Thread(target=rename)
        renamer.start()
        wait_until(lambda: lock_waiters() > 0, 10, "the PATCH to wait on the row lock")
        started = time.monotonic()
        slowest = time_requests(other_requests(server, tenant), until=started + 2)
        assert max(slowest.values()) < 1.0, slowest
        assert renamer.is_alive()  # still waiting on the lock
    renamer.join(10)
    assert patched["status"] == 200, patched
    assert patched["body"]["name"] == "Renamed"


def lock_waiters() -> int:
    """Backends of this database waiting on a lock."""
    with session_scope() as session:
        return int(
            session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
            or 0
        )


def test_the_worker_is_the_gevent_one(server: Server) -> None:
    """The log names the worker class the config chose (the tests above rely on it)."""
    assert "Using worker: api.gunicorn_worker.GeventWorker" in server.log.read_text()
