"""Source databases that are hostile servers on loopback (real sockets speaking the MySQL
and PostgreSQL protocols, tests/fakes/): the connection check of POST /databases sends
them no file and no password of ours, follows no option that would redirect it, ends
within its deadline whatever they do, and one organisation runs at most
JOBYARD_SOURCE_CHECKS_PER_ORGANISATION checks at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from shared.db import session_scope
from shared.kb.check_slots import KEY_PREFIX, check_slot
from shared.kb.models import DataSource
from shared.settings import reset_settings_cache
from tests.fakes.mysql_server import FakeMySQL
from tests.fakes.postgres_server import FakePostgres
from tests.fakes.tcp import FreezableProxy, SilentServer
from tests.support import Tenant, wait_until

CHECK_SECONDS = 2.0
SECRET = "jobyard-secret-7f3a9c-not-for-any-server"


@pytest.fixture(autouse=True)
def loopback_sources(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Sources on 127.0.0.1, and a short check deadline (the tests wait for it)."""
    monkeypatch.setenv("JOBYARD_ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("JOBYARD_SOURCE_CHECK_SECONDS", str(CHECK_SECONDS))
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def create(client: FlaskClient, tenant: Tenant, url: str, name: str = "src") -> Any:
    return client.post("/databases", headers=tenant.headers(), json={"name": name, "url": url})


def refused(response: Any, status: int = 400, code: str = "INVALID_REQUEST") -> str:
    """The error message of a refusal in Smart DB's envelope."""
    assert response.status_code == status, response.json
    assert response.json["success"] is False and response.json["error"]["code"] == code
    return str(response.json["error"]["message"])


def registered(tenant: Tenant) -> int:
    with session_scope() as session:
        return session.query(DataSource).filter_by(organisation_id=tenant.org_id).count()


# -- files and passwords of ours -------------------------------------------------------------


def test_a_mysql_server_asking_for_a_local_file_receives_nothing_of_it(
    client: FlaskClient, tenant: Tenant, tmp_path: Path
) -> None:
    """The issue's attack: the server answers the check with LOAD DATA LOCAL for a file
    of the API host (here one the test wrote, with a secret in it)."""
    secret_file = tmp_path / "environ"
    secret_file.write_text(f"SECRET_KEY={SECRET}\n")
    with FakeMySQL(infile=str(secret_file)) as server:
        url = f"mysql+pymysql://root@127.0.0.1:{server.port}/x"
        asking = create(client, tenant, f"{url}?local_infile=1")
        connections_then = server.connections
        plain = create(client, tenant, f"{url}?charset=utf8mb4&connect_timeout=3")
    assert SECRET.encode() not in server.received
    assert "not accepted: local_infile" in refused(asking)
    assert connections_then == 0  # refused before connecting
    assert "LOAD_LOCAL" in refused(plain)  # the driver refused the server's request
    assert server.infile_requests >= 1  # the server did ask
    assert registered(tenant) == 0


def test_no_password_of_the_api_host_reaches_a_server_that_asks(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq would answer a password request with PGPASSWORD or a ~/.pgpass entry of the
    API's own environment; a source URL without a password sends none."""
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"*:*:*:*:{SECRET}-pgpass\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    monkeypatch.setenv("PGPASSWORD", f"{SECRET}-env")
    with FakePostgres(asks_password=True) as server:
        url = f"postgresql://app@127.0.0.1:{server.port}/x"
        without = create(client, tenant, url)
        # The URL's own password is the one sent (so the server did ask, and did read).
        refused(create(client, tenant, url.replace("app@", "app:tenants-own@")))
    assert SECRET.encode() not in server.received
    assert "no password supplied" in refused(without)
    assert server.connections == 2
    assert b"tenants-own" in server.received
    assert registered(tenant) == 0


# -- options that would redirect the connection ------------------------------------------


def test_postgresql_options_that_would_redirect_the_connection_are_refused(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each option is a 400 naming it, and the listener standing in for the host it
    names (an internal database, say) receives no connection."""
    with SilentServer() as internal:
        port = internal.port
        services = tmp_path / "pg_service.conf"
        services.write_text(f"[internal]\nhost=127.0.0.1\nport={port}\n")
        monkeypatch.setenv("PGSERVICEFILE", str(services))
        base = "postgresql://postgres@127.0.0.1/postgres"
        cases = {
            f"{base}?port={port}": "port",
            f"{base}?host=127.0.0.1&port={port}": "host",
            f"{base}?hostaddr=127.0.0.1&port={port}": "hostaddr",
            f"{base}?service=internal": "service",
            f"{base}?passfile={tmp_path}/pgpass": "passfile",
            f"{base}?options=-c%20search_path%3Dx": "options",
            f"{base}?load_balance_hosts=random": "load_balance_hosts",
            f"{base}?sslpassword=x": "sslpassword",
            f"postgresql://postgres@127.0.0.2,127.0.0.1:{port}/postgres": "several hosts",
            f"postgresql://postgres@127.0.0.2:5432,127.0.0.1:{port}/postgres": "port",
        }
        for url, named in cases.items():
            assert named in refused(create(client, tenant, url)), url
        # A database name that reads like connection parameters stays a name.
        url = f"{base[: -len('postgres')]}host%3D127.0.0.1%20port%3D{port}"
        assert "does not exist" in refused(create(client, tenant, url))
        assert internal.connections == 0
    assert registered(tenant) == 0


# -- deadlines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "server"),
    [
        ("mysql+pymysql", lambda: SilentServer()),
        ("postgresql", lambda: SilentServer()),
        ("mysql+pymysql", lambda: FakeMySQL(infile=None)),
        ("postgresql", lambda: FakePostgres(asks_password=False)),
    ],
    ids=["mysql-silent", "postgresql-silent", "mysql-hangs-after-login", "pg-hangs-after-login"],
)
def test_a_check_ends_within_its_deadline_whatever_the_server_does(
    client: FlaskClient, tenant: Tenant, scheme: str, server: Any
) -> None:
    """A server that accepts and never answers, or completes the login and then never
    answers a query: the check is a 400 within JOBYARD_SOURCE_CHECK_SECONDS."""
    with server() as fake:
        started = time.monotonic()
        message = refused(create(client, tenant, f"{scheme}://u@127.0.0.1:{fake.port}/x"))
        elapsed = time.monotonic() - started
        assert fake.connections == 1
    assert elapsed < CHECK_SECONDS + 0.5, (elapsed, message)
    assert message.startswith("cannot connect to the database")
    assert registered(tenant) == 0


def test_the_table_check_of_a_new_sync_job_ends_within_the_deadline(
    client: FlaskClient, tenant: Tenant
) -> None:
    """A source that answered when it was registered, and hangs later (a proxy to the
    real PostgreSQL that stops relaying): POST /jobs/create is a 400 in time, also when
    it takes the connection the previous request left in the pool."""
    with FreezableProxy(("127.0.0.1", 5432)) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
        assert create(client, tenant, url, name="flaky").status_code == 201
        response = client.post(
            "/knowledge_bases", headers=tenant.headers(), json={"name": "kb_flaky"}
        )
        assert response.status_code == 201, response.json
        body = {
            "source_table": "flaky.pg_class_missing",
            "kb_name": "kb_flaky",
            "content_columns": ["relname"],
            "filter_column": "oid",
            "interval": "10 MINUTES",
            "start_time": "2030-01-01T00:00:00Z",
            "end_time": "2030-01-02T00:00:00Z",
        }
        answer = client.post(
            "/jobs/create", headers=tenant.headers(), json={**body, "job_name": "a"}
        )
        assert refused(answer, code="INVALID_TABLE")  # read fine: the table does not exist
        proxy.freeze()
        started = time.monotonic()
        answer = client.post(
            "/jobs/create", headers=tenant.headers(), json={**body, "job_name": "b"}
        )
        elapsed = time.monotonic() - started
    refused(answer, code="INVALID_TABLE")
    assert f"no answer within {CHECK_SECONDS:g} s" in str(answer.json["error"]["details"])
    assert elapsed < CHECK_SECONDS + 0.5


# -- a bound per organisation ------------------------------------------------------------------


def transactions_left_open() -> int:
    """Sessions of the test database idle in a transaction (a request holding one)."""
    with session_scope() as session:
        return int(
            session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
                )
            )
            or 0
        )


def post_in_thread(app: Flask, tenant: Tenant, url: str, answers: list[Any]) -> threading.Thread:
    def post() -> None:
        answers.append(create(app.test_client(), tenant, url))

    thread = threading.Thread(target=post)
    thread.start()
    return thread


@pytest.fixture
def unlimited_app() -> Flask:
    """The app without request rate limits: Flask-Limiter stamps its own window's reset
    as Retry-After on every answer (raising any other), which would hide ours."""
    from api import create_app

    return create_app({"TESTING": True, "RATELIMIT_ENABLED": False})


def test_an_organisation_runs_at_most_its_bound_of_checks_at_once(
    unlimited_app: Flask, tenant: Tenant, other_tenant: Tenant, broker: redis.Redis
) -> None:
    """Two checks of one organisation hang on a silent server: its third is refused at
    once (429, Retry-After), while another organisation's check goes on."""
    app = unlimited_app
    answers: list[Any] = []
    others: list[Any] = []
    with SilentServer() as server:
        url = f"mysql+pymysql://root@127.0.0.1:{server.port}/x"
        hanging = [post_in_thread(app, tenant, url, answers) for _ in range(2)]
        wait_until(lambda: server.connections == 2, 5, "two checks connecting")
        # No connection to our database is held while a tenant's server is waited on.
        assert transactions_left_open() == 0
        started = time.monotonic()
        third = create(app.test_client(), tenant, url)
        assert time.monotonic() - started < 0.5
        message = refused(third, 429, "LIMIT_EXCEEDED")
        assert "JOBYARD_SOURCE_CHECKS_PER_ORGANISATION" in message
        assert third.headers["Retry-After"] == str(int(CHECK_SECONDS))
        other = post_in_thread(app, other_tenant, url, others)
        wait_until(lambda: server.connections == 3, 5, "the other organisation's check")
        for thread in (*hanging, other):
            thread.join(CHECK_SECONDS + 5)
    assert [a.status_code for a in answers + others] == [400, 400, 400]
    assert registered(tenant) == registered(other_tenant) == 0
    # Every slot was given back.
    assert broker.zcard(f"{KEY_PREFIX}:{tenant.org_id}") == 0
    assert broker.zcard(f"{KEY_PREFIX}:{other_tenant.org_id}") == 0


def test_the_table_check_of_a_new_sync_job_takes_a_slot_too(
    unlimited_app: Flask, tenant: Tenant
) -> None:
    """With the organisation's slots held (here by the test itself, through the same
    Redis semaphore), a new sync job's table check is refused at once, as a new
    database's connection check is."""
    client = unlimited_app.test_client()
    assert create(client, tenant, "postgresql://postgres@127.0.0.1/postgres").status_code == 201
    response = client.post("/knowledge_bases", headers=tenant.headers(), json={"name": "kb"})
    assert response.status_code == 201, response.json
    body = {
        "job_name": "sync",
        "source_table": "src.no_such_table",
        "kb_name": "kb",
        "content_columns": ["name"],
        "filter_column": "oid",
        "interval": "10 MINUTES",
        "start_time": "2030-01-01T00:00:00Z",
        "end_time": "2030-01-02T00:00:00Z",
    }
    with check_slot(tenant.org_id), check_slot(tenant.org_id):
        answer = client.post("/jobs/create", headers=tenant.headers(), json=body)
        refused(answer, 429, "LIMIT_EXCEEDED")
        assert answer.headers["Retry-After"] == str(int(CHECK_SECONDS))
        refused(
            create(client, tenant, "postgresql://postgres@127.0.0.1/postgres", "b"),
            429,
            "LIMIT_EXCEEDED",
        )
    # Slots given back: the check runs (and finds no such table in the public schema).
    refused(client.post("/jobs/create", headers=tenant.headers(), json=body), 400, "INVALID_TABLE")


def test_without_redis_a_check_is_refused_not_unbounded(
    unlimited_app: Flask, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = unlimited_app.test_client()
    with SilentServer() as server:
        monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
        reset_settings_cache()
        answer = create(client, tenant, f"mysql+pymysql://root@127.0.0.1:{server.port}/x")
        assert server.connections == 0
    refused(answer, 503, "SERVICE_UNAVAILABLE")
    assert answer.headers["Retry-After"] == str(int(CHECK_SECONDS))
    assert registered(tenant) == 0
