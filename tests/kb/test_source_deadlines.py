"""A sync run's reads of a source database are bounded on our side: each statement by
JOBYARD_SOURCE_STATEMENT_TIMEOUT_SECONDS (PostgreSQL's statement_timeout, PyMySQL's read
timeout), and each step of a run by JOBYARD_SOURCE_READ_SECONDS even when the server
stops answering altogether (a proxy in front of the real PostgreSQL that stops relaying)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError

from shared.db import session_scope, unit_of_work
from shared.engine.job_types import PlanFailed
from shared.kb import sync
from shared.kb.models import DataSource, SyncRun
from shared.kb.runs import BatchFailed, prepare_run, write_batch
from shared.kb.source_connections import source_connection
from shared.kb.sources import get_source, source_engine
from shared.models import Job
from shared.settings import reset_settings_cache
from tests.fakes.tcp import FreezableProxy
from tests.kb_support import create_job, create_kb, insert_orders, job_body, source_table
from tests.support import Tenant


def run_now(organisation_id: uuid.UUID, name: str) -> uuid.UUID:
    """Start a run of the sync job now, in a unit of work of its own (as a request does)."""
    with unit_of_work() as work:
        return sync.run_now(work, organisation_id, name)


READ_SECONDS = 2.0
STATEMENT_SECONDS = 1.0
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/mysql"


@pytest.fixture(autouse=True)
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOBYARD_ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("JOBYARD_SOURCE_READ_SECONDS", str(READ_SECONDS))
    monkeypatch.setenv("JOBYARD_SOURCE_STATEMENT_TIMEOUT_SECONDS", str(STATEMENT_SECONDS))
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def registered_source(client: FlaskClient, tenant: Tenant, url: str) -> DataSource:
    name = f"src_{uuid.uuid4().hex[:8]}"
    response = client.post("/databases", headers=tenant.headers(), json={"name": name, "url": url})
    assert response.status_code == 201, response.json
    with session_scope() as session:
        source = get_source(session, tenant.org_id, name)
        session.expunge(source)
        return source


def test_postgresql_reads_carry_a_statement_timeout(client: FlaskClient, tenant: Tenant) -> None:
    database = "postgresql://postgres@127.0.0.1:5432/postgres"
    engine = source_engine(registered_source(client, tenant, database))
    with source_connection(engine, READ_SECONDS) as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "1s"
        started = time.monotonic()
        with pytest.raises(DBAPIError, match="statement timeout"):
            connection.execute(text("SELECT pg_sleep(3)"))
        # The server stopped it itself, before our deadline shut the connection.
        assert STATEMENT_SECONDS <= time.monotonic() - started < READ_SECONDS


def test_mysql_reads_carry_a_read_timeout(client: FlaskClient, tenant: Tenant) -> None:
    try:
        engine = source_engine(registered_source(client, tenant, MARIADB_URL))
    except AssertionError:
        pytest.skip("no MariaDB/MySQL at 127.0.0.1:3306")
    with source_connection(engine, READ_SECONDS + 5) as connection:
        started = time.monotonic()
        with pytest.raises(DBAPIError, match=r"Lost connection|timed out"):
            connection.execute(text("SELECT SLEEP(4)"))
        assert STATEMENT_SECONDS <= time.monotonic() - started < STATEMENT_SECONDS + 1


@dataclass
class ProxiedRun:
    proxy: FreezableProxy
    org_id: uuid.UUID
    job_name: str


@pytest.fixture
def proxied_run(client: FlaskClient, tenant: Tenant) -> Iterator[ProxiedRun]:
    """A sync job whose source is the test database behind a proxy that can freeze."""
    with source_table() as (engine, table), FreezableProxy(("127.0.0.1", 5432)) as proxy:
        insert_orders(engine, table, 5, start=0, at=datetime(2026, 11, 1, 12))
        database = engine.url.database
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"
        response = client.post(
            "/databases", headers=tenant.headers(), json={"name": "shop", "url": url}
        )
        assert response.status_code == 201, response.json
        kb = f"kb_{uuid.uuid4().hex[:6]}"
        create_kb(client, tenant, kb)
        job_name = create_job(client, tenant, job_body("shop", table.name, kb))["job_name"]
        yield ProxiedRun(proxy, tenant.org_id, job_name)


@pytest.mark.timeout(60)
def test_a_run_step_ends_within_its_deadline_when_the_source_stops_answering(
    proxied_run: ProxiedRun,
) -> None:
    run_id = run_now(proxied_run.org_id, proxied_run.job_name)
    prepare_run(run_id)  # the source answers: planned
    with session_scope() as session:
        job = session.get(Job, run_id)
        assert job is not None
        batch = job.payload["batches"][0]
    proxied_run.proxy.freeze()
    # A batch on the connection the plan left in the pool: retryable, in time.
    started = time.monotonic()
    with pytest.raises(BatchFailed, match=f"no answer within {READ_SECONDS:g} s") as failed:
        write_batch(run_id, batch)
    assert failed.value.retryable
    assert time.monotonic() - started < READ_SECONDS + 1
    # Planning a new run on a new connection: connecting is bounded too.
    with session_scope() as session:
        session.execute(update(SyncRun).where(SyncRun.job_id == run_id).values(status="canceled"))
    second = run_now(proxied_run.org_id, proxied_run.job_name)
    started = time.monotonic()
    with pytest.raises(PlanFailed, match="cannot read"):
        prepare_run(second)
    assert time.monotonic() - started < READ_SECONDS + 1
