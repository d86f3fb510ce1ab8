"""A lost database is a 503 with Retry-After in the family's envelope, never a 500, and
the request after it works.

The real API (gunicorn as the Procfile starts it: ``running_api``) answers a steady load
of every family's requests while the test terminates its database connections
(``pg_terminate_backend``: what a failover or an operator does; psycopg raises
AdminShutdown in the requests in flight) and while PostgreSQL refuses connections to the
database (``ALLOW_CONNECTIONS false``). The API's connections carry an application name
of their own, so that the test's are spared.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from flask.testing import FlaskClient

from api.families import Family, discover
from shared.db import dispose_engine, get_engine
from shared.settings import reset_settings_cache
from tests.conftest import DATABASE_URL, SERVER_URL, TEST_DB
from tests.support import Tenant, json_log_lines, running_api

API_CONNECTIONS = "jobyard-api-under-test"
FAMILIES = {family.name: family for family in discover()}
UNAVAILABLE = "The database is unavailable; retry in a few seconds"
RETRY_AFTER = "5"  # api.errors.DATABASE_RETRY_AFTER_SECONDS, not the rate limit's reset
CLIENT_THREADS = 4  # as many as the API's gunicorn threads (deploy/gunicorn.conf.py)


@dataclass(frozen=True)
class Call:
    """One request of a family that reads or writes the database."""

    family: str
    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None


def calls_of(tenant: Tenant) -> list[Call]:
    key = {"x-api-key": tenant.api_key}
    return [
        Call("mentionlab", "GET", "/api/projects/list", tenant.headers()),
        Call("mentionlab", "POST", "/api/queries", tenant.headers(), {"query": "a new question"}),
        Call("superai", "GET", f"/v1/apps/{tenant.project_id}/jobs", {"API-KEY": tenant.api_key}),
        Call("valpay", "GET", "/v1/jobs?limit=5", {"Authorization": f"Bearer {tenant.token}"}),
        Call("smartdb", "GET", "/jobs", key),
        Call("smartdb", "GET", "/knowledge_bases", key),
    ]


@dataclass
class Answer:
    call: Call
    status: int
    body: Any
    retry_after: str | None


@dataclass
class Load:
    """Client threads sending the calls in turn, as fast as the API answers, until stopped."""

    base_url: str
    calls: list[Call]
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, offset: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            n = offset
            while not self._stop.is_set():
                call = self.calls[n % len(self.calls)]
                n += 1
                try:
                    answer = send(client, call)
                except httpx.HTTPError as exc:  # the API itself must stay up
                    with self._lock:
                        self.failures.append(f"{call.method} {call.path}: {exc!r}")
                    continue
                with self._lock:
                    self.answers.append(answer)

    def during(self, action: Callable[[], None]) -> list[Answer]:
        """The answers given while ``action`` runs (the load starts before it)."""
        self.answers, self._stop = [], threading.Event()
        threads = [threading.Thread(target=self.run, args=(i,)) for i in range(CLIENT_THREADS)]
        for thread in threads:
            thread.start()
        try:
            action()
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(60)
        assert not self.failures, self.failures[:5]
        return self.answers


def send(client: httpx.Client, call: Call) -> Answer:
    response = client.request(call.method, call.path, headers=call.headers, json=call.json)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return Answer(call, response.status_code, body, response.headers.get("Retry-After"))


def admin(sql: str) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def terminate_api_connections() -> int:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = %s",
            (TEST_DB, API_CONNECTIONS),
        ).fetchall()
    return len(rows)


def wrong_answers(answers: list[Answer]) -> list[str]:
    """Every answer that is neither a success, a 4xx nor a 503 with Retry-After in the
    family's envelope."""
    wrong = []
    for a in answers:
        family: Family = FAMILIES[a.call.family]
        if a.status == 503:
            expected = family.envelope(503, UNAVAILABLE, [], None)
            if a.body != expected or a.retry_after != RETRY_AFTER:
                wrong.append(f"{a.call.method} {a.call.path}: 503 {a.body} {a.retry_after}")
        elif not (200 <= a.status < 300 or 400 <= a.status < 500):
            wrong.append(f"{a.call.method} {a.call.path}: {a.status} {a.body}")
    return wrong


def statuses(answers: list[Answer]) -> Counter[int]:
    return Counter(a.status for a in answers)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The real API, its database connections named for the test; its base URL and log."""
    folder = tmp_path_factory.mktemp("database-loss")
    with running_api(
        folder,
        DATABASE_URL=f"{DATABASE_URL}?application_name={API_CONNECTIONS}",
        JOBYARD_API_RATE_LIMIT="1000000 per minute",
    ) as base_url:
        yield base_url, folder / "web.log"


def all_succeed(base_url: str, calls: list[Call]) -> None:
    """Each call, once, answers a success: the pool gave a live connection at once."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for call in calls:
            answer = send(client, call)
            assert 200 <= answer.status < 300, (call, answer.status, answer.body)


def test_terminated_connections_are_503_then_the_next_request_works(
    api: tuple[str, Path], tenant: Tenant
) -> None:
    base_url, log = api
    calls = calls_of(tenant)
    all_succeed(base_url, calls)

    def terminate_for_a_while() -> None:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            terminate_api_connections()
            time.sleep(0.02)

    answers = Load(base_url, calls).during(terminate_for_a_while)
    assert not wrong_answers(answers), "\n".join(wrong_answers(answers)[:10])
    counts = statuses(answers)
    assert counts[503] >= 1, f"no request met a terminated connection: {counts}"
    assert sum(n for s, n in counts.items() if 200 <= s < 300) >= 1, counts
    all_succeed(base_url, calls)
    assert_logged_once_each(log, "AdminShutdown")


def test_a_database_refusing_connections_is_503_then_the_next_request_works(
    api: tuple[str, Path], tenant: Tenant
) -> None:
    base_url, log = api
    calls = calls_of(tenant)
    all_succeed(base_url, calls)

    def refuse_for_a_while() -> None:
        admin(f"ALTER DATABASE {TEST_DB} ALLOW_CONNECTIONS false")
        try:
            terminate_api_connections()
            time.sleep(3)
        finally:
            admin(f"ALTER DATABASE {TEST_DB} ALLOW_CONNECTIONS true")

    try:
        answers = Load(base_url, calls).during(refuse_for_a_while)
    finally:
        admin(f"ALTER DATABASE {TEST_DB} ALLOW_CONNECTIONS true")
    assert not wrong_answers(answers), "\n".join(wrong_answers(answers)[:10])
    counts = statuses(answers)
    assert counts[503] >= 10, f"the API did not notice the database was gone: {counts}"
    all_succeed(base_url, calls)
    assert_logged_once_each(log, "OperationalError")


def assert_logged_once_each(log: Path, cause: str) -> None:
    """Each 503 is one warning line naming its cause (no traceback, no ERROR line), and
    the request log says 503 as often."""
    records = json_log_lines(log.read_bytes())
    errors = [r["message"] for r in records if r.get("level") in ("ERROR", "CRITICAL")]
    assert not errors, errors[:5]
    warnings = [
        r for r in records if str(r.get("message", "")).startswith("database unavailable on ")
    ]
    assert all(r["level"] == "WARNING" and "exc_info" not in r for r in warnings), warnings[:3]
    assert any(cause in r["message"] for r in warnings), [r["message"] for r in warnings[:5]]
    answered = [r for r in records if r.get("logger") == "jobyard.api.request"]
    assert len(warnings) == sum(1 for r in answered if r.get("status") == 503)


def test_a_pool_with_no_connection_to_give_in_time_is_503(
    client: FlaskClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection of the pool taken, and none given back in time (SQLAlchemy's
    TimeoutError): a 503 too, and the request after it works once one is free."""
    monkeypatch.setenv("JOBYARD_API_DB_POOL_SIZE", "1")  # 1, and as many again in overflow
    monkeypatch.setenv("JOBYARD_DB_POOL_TIMEOUT_SECONDS", "0.3")
    reset_settings_cache()
    dispose_engine(close=True)
    try:
        engine = get_engine()
        held = [engine.connect(), engine.connect()]
        try:
            response = client.get("/jobs", headers={"x-api-key": tenant.api_key})
        finally:
            for connection in held:
                connection.close()
        expected = FAMILIES["smartdb"].envelope(503, UNAVAILABLE, [], None)
        assert (response.status_code, response.json) == (503, expected)
        assert response.headers["Retry-After"] == RETRY_AFTER
        after = client.get("/jobs", headers={"x-api-key": tenant.api_key})
        assert after.status_code == 200, after.get_data(as_text=True)
    finally:
        monkeypatch.undo()
        reset_settings_cache()
        dispose_engine(close=True)
