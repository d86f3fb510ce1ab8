"""The embedded default database: a whole run on SQLite, with a real worker."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from shared.db import dispose_engine
from shared.migrate import upgrade_database
from shared.settings import get_settings, reset_settings_cache
from tests.support import assert_counters_exact, make_tenant, running_worker, wait_for_job
from tests.unit.test_sqlite_transactions import HOLD_THE_WRITE_LOCK


@pytest.fixture
def sqlite_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point this process (and the workers it starts) at a fresh, migrated SQLite file."""
    url = f"sqlite:///{tmp_path / 'jobyard.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings_cache()
    upgrade_database(url)
    yield url
    dispose_engine(close=True)
    monkeypatch.undo()
    reset_settings_cache()


def test_trigger_runs_to_completion_on_sqlite(
    sqlite_database: str, client: FlaskClient, tmp_path: Path, empty_broker: object
) -> None:
    """Migrations, the API and the worker all work on SQLite."""
    assert get_settings().is_sqlite
    tenant = make_tenant(n_queries=2)
    with running_worker(tmp_path, concurrency=4, DATABASE_URL=sqlite_database):
        response = client.post(
            "/api/jobs/trigger",
            headers=tenant.headers(bearer=True),
            json={"aiModels": ["gpt-4.1-mini", "sonar"], "executionCount": 3},
        )
        assert response.status_code == 201, response.json
        job = wait_for_job(response.json["id"], timeout=60)
    assert job.status == "completed" and job.success == 12
    assert_counters_exact(job.id)
    listed = client.post("/api/jobs/list", headers=tenant.headers(), json={}).json
    assert listed["page"]["totalRecords"] == 1
    assert listed["results"][0]["status"] == "completed"


def test_a_read_answers_while_a_writer_holds_sqlite(
    sqlite_database: str, client: FlaskClient
) -> None:
    """A GET reads a snapshot: it does not wait for a writer of another process (a worker
    finishing a batch) to commit. A POST that writes does wait its turn."""
    tenant = make_tenant(n_queries=1)
    job = client.post(
        "/api/jobs/trigger",
        headers=tenant.headers(bearer=True),
        json={"aiModels": ["gpt-4.1-mini"], "executionCount": 1},
    ).json
    path = sqlite_database.removeprefix("sqlite:///")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WRITE_LOCK, path, "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        read = client.get(f"/api/jobs/{job['id']}", headers=tenant.headers())
        read_seconds = time.monotonic() - started
        written = client.post(
            "/api/queries",
            headers=tenant.headers(),
            json={"query": "one more", "language": "en", "country": "US"},
        )
        write_seconds = time.monotonic() - started
    finally:
        assert holder.wait(30) == 0
        holder.stdout.close()  # type: ignore[union-attr]
    assert read.status_code == 200 and read_seconds < 1.0, read_seconds
    assert written.status_code == 201 and write_seconds >= 2.0, write_seconds
