"""Knowledge-base sync jobs end to end: real beat and worker processes, real PostgreSQL and
SQLite source tables; slots are made due by moving the next slot into the past."""

from __future__ import annotations

import os
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text, update
from sqlalchemy.exc import SQLAlchemyError

from tests.kb_support import (
    SOURCE_URL,
    create_job,
    create_kb,
    insert_orders,
    job_body,
    kb_rows,
    make_due,
    next_run_at,
    private_allowed,  # noqa: F401 - a fixture
    quiet_other_sync_jobs,
    register,
    runs,
    set_slot,
    source_table,
    sync_job,
)
from tests.support import (
    Tenant,
    assert_counters_exact,
    running_beat,
    running_worker,
    wait_for_job,
    wait_until,
)

ENV = {
    "JOBYARD_ALLOW_PRIVATE_URLS": "true",
    "JOBYARD_SCHEDULE_TICK_SECONDS": 1,
    "JOBYARD_KB_SYNC_BATCH_ROWS": 100,  # several batches from a few hundred rows
}
T0 = datetime(2026, 11, 1, 12, 0, 0)


@pytest.fixture(autouse=True)
def only_this_tests_jobs() -> None:
    quiet_other_sync_jobs()


def run_slot(name: str, previous_runs: int) -> Any:
    """Make the job's slot due, wait for beat to start its run and for the run to end."""
    make_due(name)
    wait_until(lambda: len(runs(name)) > previous_runs, 30, f"a run of {name} to start")
    run = runs(name)[-1]
    wait_for_job(run.job_id, timeout=60)
    wait_until(lambda: runs(name)[-1].status != "running", 30, "the run's history to close")
    return runs(name)[-1]


def search(client: FlaskClient, tenant: Tenant, kb: str, query: str, **extra: Any) -> list[Any]:
    response = client.post(
        f"/knowledge_bases/{kb}/search",
        headers=tenant.headers(),
        json={"query": query, "limit": 5, **extra},
    )
    assert response.status_code == 200, response.json
    return list(response.json["data"])


def history(client: FlaskClient, tenant: Tenant, name: str) -> list[dict[str, Any]]:
    response = client.get(f"/jobs/{name}/history", headers=tenant.headers())
    assert response.status_code == 200, response.json
    return list(response.json["data"])


def test_backfill_new_updated_boundary_rows_and_a_dropped_table(
    client: FlaskClient,
    tenant: Tenant,
    tmp_path: Path,
    private_allowed: None,  # noqa: F811
    empty_broker: object,
) -> None:
    """One job over five runs: no row missed, none written twice, and a failed run that
    says why while the job goes on from the same watermark."""
    kb = f"kb_{uuid.uuid4().hex[:6]}"
    register(client, tenant, "shop", SOURCE_URL)
    create_kb(client, tenant, kb, metadata_columns=["created_at"])
    with source_table() as (engine, table), running_worker(tmp_path, 4, **ENV):
        insert_orders(engine, table, 250, start=0, at=T0)
        body = job_body("shop", table.name, kb)
        created = create_job(client, tenant, body)
        name = created["job_name"]
        assert created["status"] == "scheduled"
        with running_beat(tmp_path, **ENV):
            # 1. The first run backfills the table (3 batches of 100).
            first = run_slot(name, 0)
            assert (first.status, first.rows_read, first.rows_written) == ("completed", 250, 250)
            job = assert_counters_exact(first.job_id)
            assert (job.total, job.success) == (3, 3)
            stored = kb_rows(kb)
            assert set(stored) == {str(i) for i in range(250)}
            assert all(len(chunks) == 1 for chunks in stored.values())
            # 2. New rows: only they are read.
            insert_orders(engine, table, 30, start=250, at=T0 + timedelta(hours=1))
            second = run_slot(name, 1)
            assert (second.status, second.rows_read, second.rows_written) == ("completed", 30, 30)
            assert set(kb_rows(kb)) == {str(i) for i in range(280)}
            # 3. Updated rows: read again, replaced, never duplicated.
            with engine.begin() as connection:
                connection.execute(
                    update(table)
                    .where(table.c.id < 10)
                    .values(
                        description="Refurbished, with a two-year warranty",
                        created_at=T0 + timedelta(hours=2),
                    )
                )
            third = run_slot(name, 2)
            assert (third.rows_read, third.rows_written) == (10, 10)
            stored = kb_rows(kb)
            assert len(stored) == 280 and all(len(c) == 1 for c in stored.values())
            assert all("two-year warranty" in stored[str(i)][0] for i in range(10))
            # 4. Rows that share the boundary value (the watermark) are not missed, and the
            #    rows already written at it are not read again.
            watermark = sync_job(name).watermark
            assert watermark is not None
            assert watermark["value"] == {"datetime": (T0 + timedelta(hours=2)).isoformat()}
            assert sorted(watermark["ids"], key=int) == [str(i) for i in range(10)]
            insert_orders(engine, table, 5, start=1000, at=T0 + timedelta(hours=2))
            with engine.begin() as connection:  # all five at the boundary value itself
                connection.execute(
                    update(table)
                    .where(table.c.id >= 1000)
                    .values(created_at=T0 + timedelta(hours=2))
                )
            fourth = run_slot(name, 3)
            assert (fourth.status, fourth.rows_read, fourth.rows_written) == ("completed", 5, 5)
            assert len(kb_rows(kb)) == 285
            # 5. The table is dropped: the run fails and says why; the job goes on.
            before = sync_job(name).watermark
            table.drop(engine)
            fifth = run_slot(name, 4)
            assert fifth.status == "failed"
            assert "does not exist" in (fifth.error or "")
            after = sync_job(name)
            assert after.status == "scheduled" and next_run_at(name) is not None
            assert after.watermark == before
            # Back again: the next run starts from the same watermark (nothing new).
            table.create(engine)
            sixth = run_slot(name, 5)
            assert (sixth.status, sixth.rows_read) == ("completed", 0)

    entries = history(client, tenant, name)
    assert [e["status"] for e in entries] == [
        "completed",
        "failed",
        "completed",
        "completed",
        "completed",
        "completed",
    ]
    assert [e["rows_read"] for e in entries] == [0, 0, 5, 10, 30, 250]
    assert "does not exist" in entries[1]["error"]
    assert all(e["run_start"] and e["run_end"] and e["job_id"] for e in entries)
    found = search(client, tenant, kb, "espresso maker milk frother")
    assert found and found[0]["chunk_content"].startswith("Espresso machine")


def test_two_beats_start_one_run_per_slot(
    client: FlaskClient,
    tenant: Tenant,
    tmp_path: Path,
    private_allowed: None,  # noqa: F811
    empty_broker: object,
) -> None:
    """Two beats tick every second, racing for each due slot; each of three slots runs
    once."""
    kb = f"kb_{uuid.uuid4().hex[:6]}"
    register(client, tenant, "shop", SOURCE_URL)
    create_kb(client, tenant, kb)
    for name in ("w1", "b1", "b2"):
        (tmp_path / name).mkdir()
    with source_table() as (engine, table):
        insert_orders(engine, table, 20, start=0, at=T0)
        name = create_job(client, tenant, job_body("shop", table.name, kb))["job_name"]
        set_slot(name, None)  # no slot until the test makes one due
        slots = []
        with (
            running_worker(tmp_path / "w1", 4, **ENV),
            running_beat(tmp_path / "b1", **ENV),
            running_beat(tmp_path / "b2", **ENV),
        ):
            for n in range(3):
                slot = make_due(name, datetime.now(UTC) - timedelta(minutes=10 - n))
                slots.append(slot)
                wait_until(lambda n=n: len(runs(name)) > n, 30, f"slot {n} to start")
                wait_for_job(runs(name)[-1].job_id, timeout=60)
                wait_until(lambda: runs(name)[-1].status != "running", 30, "the run to close")
                # The claimed slot moved on to the next one, ten minutes away.
                moved = next_run_at(name)
                assert moved is not None and moved > datetime.now(UTC) + timedelta(minutes=5)
    done = runs(name)
    assert len(done) == 3
    assert sorted(r.slot_at for r in done if r.slot_at) == slots
    assert [r.rows_read for r in done] == [20, 0, 0]


def test_a_sqlite_table_without_a_key_syncs_by_content(
    client: FlaskClient,
    tenant: Tenant,
    tmp_path: Path,
    private_allowed: None,  # noqa: F811
    empty_broker: object,
) -> None:
    """A SQLite source whose table has no primary key: rows are known by their content's
    hash, so a second run over the same rows writes nothing twice."""
    path = tmp_path / "orders.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE orders (product TEXT, description TEXT, created_at TEXT)")
        connection.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [
                ("Espresso machine", "A 15-bar pump espresso maker", "2026-11-01 12:00:00"),
                ("Yoga mat", "A non-slip exercise mat", "2026-11-01 12:00:00"),
                ("Electric kettle", "A stainless steel kettle", "2026-11-01 12:05:00"),
            ],
        )
    kb = f"kb_{uuid.uuid4().hex[:6]}"
    register(client, tenant, "local", f"sqlite:///{path}")
    create_kb(client, tenant, kb)
    name = create_job(client, tenant, job_body("local", "orders", kb))["job_name"]
    with running_worker(tmp_path, 4, **ENV), running_beat(tmp_path, **ENV):
        first = run_slot(name, 0)
        assert (first.status, first.rows_read) == ("completed", 3)
        with sqlite3.connect(path) as connection:
            connection.execute(
                "INSERT INTO orders VALUES ('Hiking backpack', 'A 40 litre backpack', "
                "'2026-11-01 12:05:00')"
            )
        second = run_slot(name, 1)
        assert (second.status, second.rows_read) == ("completed", 1)
    assert len(kb_rows(kb)) == 4
    assert search(client, tenant, kb, "kettle")[0]["chunk_content"].startswith("Electric kettle")


MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/jobyard_sources")


def mariadb_available() -> bool:
    """Whether a MariaDB/MySQL server answers; its test database is made if missing."""
    url = make_url(MARIADB_URL.replace("mysql://", "mysql+pymysql://"))
    try:
        engine = create_engine(url._replace(database=None))
        with engine.begin() as connection:
            connection.execute(text(f"CREATE DATABASE IF NOT EXISTS `{url.database}`"))
        engine.dispose()
        return True
    except SQLAlchemyError:
        return False


@pytest.mark.skipif(not mariadb_available(), reason="no MariaDB/MySQL at TEST_MARIADB_URL")
def test_a_mariadb_table_syncs(
    client: FlaskClient,
    tenant: Tenant,
    tmp_path: Path,
    private_allowed: None,  # noqa: F811
    empty_broker: object,
) -> None:
    """The same backfill and increment from MariaDB (through PyMySQL)."""
    kb = f"kb_{uuid.uuid4().hex[:6]}"
    register(client, tenant, "maria", MARIADB_URL)
    create_kb(client, tenant, kb)
    with source_table(MARIADB_URL) as (engine, table), running_worker(tmp_path, 4, **ENV):
        insert_orders(engine, table, 150, start=0, at=T0)
        name = create_job(client, tenant, job_body("maria", table.name, kb))["job_name"]
        with running_beat(tmp_path, **ENV):
            first = run_slot(name, 0)
            assert (first.status, first.rows_read) == ("completed", 150)
            insert_orders(engine, table, 3, start=500, at=T0 + timedelta(hours=1))
            second = run_slot(name, 1)
            assert (second.status, second.rows_read) == ("completed", 3)
    assert len(kb_rows(kb)) == 153
