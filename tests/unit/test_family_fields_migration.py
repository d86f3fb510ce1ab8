"""The migration that moves a run's project and a batch's app and callback out of the
engine's ``jobs`` row into the families' tables (``ai_runs``, ``batches``): existing jobs
keep them, on the way up and on the way down, and nothing else is lost."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text

from shared.db import build_engine
from shared.migrate import alembic_config
from tests.conftest import ON_SQLITE, TEST_DB, _admin

pytestmark = pytest.mark.every_database

BEFORE = "c9d0e1f2a3b4"  # the last revision with jobs.project_id and jobs.callback_url
MOVED = "d0e1f2a3b4c5"


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    """A database of the run's kind of its own: migrations go up and down in it."""
    if ON_SQLITE:
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    from tests.conftest import DATABASE_URL

    name = f"{TEST_DB}_scratch"
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin(f"CREATE DATABASE {name}")
    yield DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _seed(engine: Engine) -> dict[str, uuid.UUID]:
    """An organisation, a project, and one job of each kind, as the old schema held them."""
    ids = {name: uuid.uuid4() for name in ("org", "project", "run", "batch", "quiet", "sync")}
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO organisations (id, name, created_at) VALUES (:id, 'Acme', :now)"),
            {"id": ids["org"].hex if ON_SQLITE else ids["org"], "now": now},
        )
        connection.execute(
            text(
                "INSERT INTO projects (id, organisation_id, name, description, website, "
                "industry, name_aliases, competitors, llm_providers, execution_count, "
                "recurrence, recurrence_status, created_at, updated_at) VALUES (:id, :org, "
                "'Brand', '', '', '', '[]', '[]', '[]', 1, 'manual', 'active', :now, :now)"
            ),
            {"id": _key(ids["project"]), "org": _key(ids["org"]), "now": now},
        )
        for name, job_type, project, callback in (
            ("run", "ai_queries", ids["project"], None),
            ("batch", "batch", ids["project"], "https://example.test/hook"),
            ("quiet", "batch", ids["project"], None),
            ("sync", "kb_sync", None, None),
        ):
            connection.execute(
                text(
                    "INSERT INTO jobs (id, organisation_id, project_id, type, status, total, "
                    "pending, retrying, success, failed, max_attempts, payload, metadata, "
                    "tags, callback_url, parked, cost, created_at, updated_at) VALUES (:id, "
                    ":org, :project, :type, 'pending', 0, 0, 0, 0, 0, 3, '{}', '{}', '[]', "
                    ":callback, false, 0, :now, :now)"
                ),
                {
                    "id": _key(ids[name]),
                    "org": _key(ids["org"]),
                    "project": _key(project) if project else None,
                    "type": job_type,
                    "callback": callback,
                    "now": now,
                },
            )
    return ids


def _key(value: uuid.UUID) -> object:
    return value.hex if ON_SQLITE else value


def _rows(engine: Engine, sql: str) -> set[tuple[object, ...]]:
    with engine.connect() as connection:
        return {
            tuple(str(uuid.UUID(str(v))) if _is_uuid(v) else v for v in row)
            for row in connection.execute(text(sql))
        }


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def test_existing_jobs_keep_their_project_and_callback_up_and_down(scratch_url: str) -> None:
    config = alembic_config(scratch_url)
    command.upgrade(config, BEFORE)
    engine = build_engine(scratch_url)
    try:
        ids = _seed(engine)
        project, hook = str(ids["project"]), "https://example.test/hook"
        old_jobs = "SELECT id, project_id, callback_url FROM jobs"
        before = _rows(engine, old_jobs)

        command.upgrade(config, MOVED)
        engine.dispose()
        assert _rows(engine, "SELECT job_id, project_id FROM ai_runs") == {
            (str(ids["run"]), project)
        }
        assert _rows(engine, "SELECT job_id, app_id, callback_url FROM batches") == {
            (str(ids["batch"]), project, hook),
            (str(ids["quiet"]), project, None),
        }
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM jobs")).scalar() == 4
            columns = {
                row[1 if ON_SQLITE else 0]
                for row in connection.execute(
                    text("PRAGMA table_info(jobs)")
                    if ON_SQLITE
                    else text(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = 'jobs'"
                    )
                )
            }
        assert "project_id" not in columns and "callback_url" not in columns
        command.downgrade(config, BEFORE)
        engine.dispose()
        assert _rows(engine, old_jobs) == before  # every job, with its project and callback
        command.upgrade(config, "head")  # and up again, from the restored rows
        engine.dispose()
        assert len(_rows(engine, "SELECT job_id FROM batches")) == 2
    finally:
        engine.dispose()
