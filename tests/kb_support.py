"""Helpers of the knowledge-base sync tests: real source tables (PostgreSQL and SQLite),
sync jobs created through the API, and slots made due by moving their next slot."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine

from shared.db import session_scope
from shared.kb.models import KbChunk, KnowledgeBase, SyncJob, SyncRun
from shared.kb.sync import KB_SYNC
from shared.models import PeriodicSchedule
from shared.settings import reset_settings_cache
from tests.periodic_support import next_slot, set_next_slot
from tests.support import Tenant

# The source tables of the tests live in the test run's own database.
SOURCE_URL = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")

PRODUCTS = [
    ("Espresso machine", "A 15-bar pump espresso maker with a milk frother"),
    ("Running shoes", "Lightweight trail running shoes with a grippy sole"),
    ("Noise-cancelling headphones", "Over-ear wireless headphones, 30 hours of battery"),
    ("Cast iron skillet", "A pre-seasoned 12 inch frying pan for the oven and the stove"),
    ("Yoga mat", "A non-slip exercise mat, 6 mm thick, for yoga and pilates"),
    ("Electric kettle", "A 1.7 litre stainless steel kettle that boils water fast"),
    ("Mechanical keyboard", "A tenkeyless keyboard with tactile brown switches"),
    ("Hiking backpack", "A 40 litre waterproof backpack for multi-day hikes"),
]


@pytest.fixture
def private_allowed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The tests' source databases are on 127.0.0.1 (and SQLite files)."""
    monkeypatch.setenv("JOBYARD_ALLOW_PRIVATE_URLS", "true")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def orders_table(name: str, *, keyed: bool = True) -> Table:
    columns: list[Any] = [
        Column("product", String(200)),
        Column("description", Text),
        Column("created_at", DateTime),
    ]
    if keyed:
        columns.insert(0, Column("id", Integer, primary_key=True, autoincrement=False))
    return Table(name, MetaData(), *columns)


@contextmanager
def source_table(url: str = SOURCE_URL, *, keyed: bool = True) -> Iterator[tuple[Engine, Table]]:
    """A fresh ``orders_<hex>`` table (dropped afterwards, if it is still there)."""
    engine = create_engine(
        url.replace("postgresql://", "postgresql+psycopg://").replace(
            "mysql://", "mysql+pymysql://"
        )
    )
    table = orders_table(f"orders_{uuid.uuid4().hex[:8]}", keyed=keyed)
    table.create(engine)
    try:
        yield engine, table
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


def insert_orders(
    engine: Engine, table: Table, count: int, *, start: int, at: datetime
) -> list[dict[str, Any]]:
    """``count`` orders, one second apart from ``at`` (ids from ``start`` if keyed)."""
    rows = []
    for n in range(count):
        product, description = PRODUCTS[(start + n) % len(PRODUCTS)]
        row = {
            "product": f"{product} #{start + n}",
            "description": description,
            "created_at": at + timedelta(seconds=n),
        }
        if "id" in table.c:
            row["id"] = start + n
        rows.append(row)
    with engine.begin() as connection:
        connection.execute(table.insert(), rows)
    return rows


def register(client: FlaskClient, tenant: Tenant, name: str, url: str) -> None:
    response = client.post("/databases", headers=tenant.headers(), json={"name": name, "url": url})
    assert response.status_code == 201, response.json


def create_kb(client: FlaskClient, tenant: Tenant, name: str, **fields: Any) -> None:
    response = client.post(
        "/knowledge_bases", headers=tenant.headers(), json={"name": name, **fields}
    )
    assert response.status_code == 201, response.json


def job_body(database: str, table: str, kb: str, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    body = {
        "job_name": f"sync_{uuid.uuid4().hex[:8]}",
        "source_table": f"{database}.{table}",
        "kb_name": kb,
        "content_columns": ["product", "description"],
        "filter_column": "created_at",
        "interval": "10 MINUTES",
        "start_time": (now - timedelta(minutes=1)).isoformat(),
        "end_time": (now + timedelta(days=2)).isoformat(),
    }
    body.update(overrides)
    return body


def create_job(client: FlaskClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/jobs/create", headers=tenant.headers(), json=body)
    assert response.status_code == 201, response.json
    return dict(response.json["data"])


def sync_job(name: str) -> SyncJob:
    with session_scope() as session:
        job = session.scalar(select(SyncJob).where(SyncJob.name == name))
        assert job is not None
        return job


def make_due(name: str, at: datetime | None = None) -> datetime:
    """Move the job's next slot into the past (rather than sleeping to it)."""
    slot = at or datetime.now(UTC) - timedelta(seconds=1)
    set_slot(name, slot)
    return slot


def set_slot(name: str, at: datetime | None) -> None:
    """Set the job's next slot (None: none left)."""
    job = sync_job(name)
    set_next_slot(KB_SYNC, job.id, at, job.organisation_id)


def next_run_at(name: str) -> datetime | None:
    """The job's next slot."""
    return next_slot(KB_SYNC, sync_job(name).id)


def runs(name: str) -> list[SyncRun]:
    with session_scope() as session:
        job_id = session.scalar(select(SyncJob.id).where(SyncJob.name == name))
        return list(
            session.scalars(
                select(SyncRun).where(SyncRun.sync_job_id == job_id).order_by(SyncRun.run_start)
            )
        )


def kb_rows(kb_name: str) -> dict[str, list[str]]:
    """The KB's chunks' contents by row id."""
    with session_scope() as session:
        kb_id = session.scalar(select(KnowledgeBase.id).where(KnowledgeBase.name == kb_name))
        found: dict[str, list[str]] = {}
        for row_id, content in session.execute(
            select(KbChunk.row_id, KbChunk.content)
            .where(KbChunk.kb_id == kb_id)
            .order_by(KbChunk.chunk_id)
        ):
            found.setdefault(row_id, []).append(content)
        return found


def chunk_count(kb_name: str) -> int:
    with session_scope() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(KbChunk)
                .join(KnowledgeBase, KnowledgeBase.id == KbChunk.kb_id)
                .where(KnowledgeBase.name == kb_name)
            )
            or 0
        )


def quiet_other_sync_jobs() -> None:
    """Earlier tests' sync jobs (in the shared test database) stop taking slots, so a
    tick in this test starts only this test's runs."""
    with session_scope() as session:
        session.execute(update(SyncJob).values(status="completed"))
        session.execute(
            update(PeriodicSchedule)
            .where(PeriodicSchedule.kind == KB_SYNC)
            .values(next_slot_at=None)
        )
        session.execute(
            update(SyncRun).where(SyncRun.status == "running").values(status="canceled")
        )
