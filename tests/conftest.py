"""Fixtures: a fresh database and Redis DB per run, the app, tenants, workers.

The database is PostgreSQL; with ``JOBYARD_TEST_DATABASE=sqlite`` it is a SQLite file, and
only the tests marked ``every_database`` run (the engine's race, fault and guard tests:
``make test`` runs them on both databases the README offers).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

# Every process of the run (this one and the workers it starts) reads these.
BASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TEST_DB = f"jobyard_test_{os.getpid()}"
SERVER_URL = BASE_URL.replace("postgresql+psycopg://", "postgresql://")
ON_SQLITE = os.environ.get("JOBYARD_TEST_DATABASE", "postgresql") == "sqlite"
SQLITE_DIR = Path(tempfile.gettempdir()) / TEST_DB
if ON_SQLITE:
    DATABASE_URL = f"sqlite:///{SQLITE_DIR / 'jobyard.db'}"
else:
    DATABASE_URL = BASE_URL.rsplit("/", 1)[0] + f"/{TEST_DB}"
# Each pytest-xdist worker (gw0, gw1, ...) has a Redis DB of its own (13, 14, ...), as it has
# a database of its own (the pid above): a session flushes its DB, and e2e tests count
# the messages in theirs.
_XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_BASE_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
_BASE_REDIS, _, _BASE_REDIS_DB = _BASE_REDIS_URL.rpartition("/")
REDIS_URL = f"{_BASE_REDIS}/{int(_BASE_REDIS_DB or 0) + _XDIST_WORKER}"

os.environ.update(
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=REDIS_URL,
    SECRET_KEY="test-secret-key-for-jobyard-tests-only-0123456789",
    JOBYARD_SIMULATE="true",
    JOBYARD_SIMULATED_LATENCY_MS="0",
    JOBYARD_SIMULATED_FAILURE_RATE="0",
    JOBYARD_UNDISPATCHED_AFTER_SECONDS="0",
)

from shared.db import dispose_engine  # noqa: E402
from shared.engine import job_types  # noqa: E402
from shared.migrate import upgrade_database  # noqa: E402
from shared.settings import reset_settings_cache  # noqa: E402
from tests.support import Tenant, make_tenant  # noqa: E402

# As every jobyard process does when it starts: each installed job type, and so each
# outbox consumer, is known before any test ends a job in this process.
job_types.discover()


def _admin(sql: str) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On SQLite, only the tests marked ``every_database`` run."""
    if not ON_SQLITE:
        return
    kept = [item for item in items if item.get_closest_marker("every_database")]
    deselected = [item for item in items if not item.get_closest_marker("every_database")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[str]:
    """A fresh database for this run, migrated with Alembic; dropped afterwards."""
    if ON_SQLITE:
        shutil.rmtree(SQLITE_DIR, ignore_errors=True)
        SQLITE_DIR.mkdir(parents=True)
    else:
        _admin(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
        _admin(f"CREATE DATABASE {TEST_DB}")
    reset_settings_cache()
    upgrade_database(DATABASE_URL)
    yield DATABASE_URL
    dispose_engine(close=True)
    if ON_SQLITE:
        shutil.rmtree(SQLITE_DIR, ignore_errors=True)
    else:
        _admin(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")


@pytest.fixture(scope="session", autouse=True)
def broker() -> Iterator[redis.Redis]:
    """The run's Redis database, empty at the start."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def empty_broker(broker: redis.Redis) -> redis.Redis:
    """Redis without messages left by earlier tests (for tests that count work)."""
    broker.flushdb()
    return broker


@pytest.fixture
def app() -> Flask:
    """The Flask app from the factory."""
    from api import create_app

    return create_app({"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def tenant() -> Tenant:
    """A fresh organisation with a user, a project with three queries, a key and a token."""
    return make_tenant()


@pytest.fixture
def other_tenant() -> Tenant:
    """A second, unrelated organisation (for isolation checks)."""
    return make_tenant(name="Other")


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    return tmp_path
