"""Smart DB's ``/jobs``: ``POST /jobs/create`` exactly as the seed documents it (every
error code in its 400 envelope), and the rest of a sync job's life."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import inspect, select

from shared.db import session_scope
from shared.kb.models import SyncJob, SyncRun
from shared.settings import reset_settings_cache
from tests.kb_support import (
    SOURCE_URL,
    create_job,
    create_kb,
    insert_orders,
    job_body,
    private_allowed,  # noqa: F401 - a fixture
    register,
    source_table,
)
from tests.support import Tenant

# The seed's example request (smartdb-jobs-create.txt), verbatim.
SEED_EXAMPLE = """{
"job_name": "sync_orders",
"source_table": "orders_db.orders",
"kb_name": "orders_kb",
"content_columns": ["product", "description"],
"filter_column": "created_at",
"interval": "10 MINUTES",
"start_time": "2025-06-19T18:00:00",
"end_time": "2025-06-20T18:00:00"
}"""


@pytest.fixture
def orders(
    client: FlaskClient,
    tenant: Tenant,
    private_allowed: None,  # noqa: F811
) -> Iterator[str]:
    """A tenant with the database ``shop`` (an orders table) and the KB ``orders_kb``;
    yields the table's name."""
    register(client, tenant, "shop", SOURCE_URL)
    create_kb(client, tenant, "orders_kb")
    with source_table() as (engine, table):
        insert_orders(engine, table, 5, start=0, at=datetime(2026, 11, 1))
        yield table.name


def post(client: FlaskClient, tenant: Tenant, body: Any) -> Any:
    return client.post("/jobs/create", headers=tenant.headers(), json=body)


def assert_refused(response: Any, code: str, *details: str) -> list[str]:
    """The seed's 400 body, with ``code`` and details containing each of ``details``."""
    assert response.status_code == 400, response.json
    body = response.json
    assert set(body) == {"success", "error"} and body["success"] is False, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    lines = body["error"]["details"]
    for expected in details:
        assert any(expected in line for line in lines), (expected, lines)
    return list(lines)


def job_count(tenant: Tenant) -> int:
    with session_scope() as session:
        return len(
            session.scalars(
                select(SyncJob.id).where(SyncJob.organisation_id == tenant.org_id)
            ).all()
        )


# -- the seed --------------------------------------------------------------------------------------


def seed_example() -> dict[str, Any]:
    return dict(json.loads(SEED_EXAMPLE))


def test_the_seed_example_is_created_with_the_seed_answer(
    client: FlaskClient,
    tenant: Tenant,
    private_allowed: None,  # noqa: F811
) -> None:
    """The seed's body verbatim (orders_db.orders into orders_kb): 201 with the seed's
    fields. Its window (June 2025) is over, so no slot is left: completed, no next run."""
    with source_table() as (_engine, table):
        register(client, tenant, "orders_db", SOURCE_URL)
        create_kb(client, tenant, "orders_kb")
        body = seed_example()
        assert body["source_table"] == "orders_db.orders"
        body["source_table"] = f"orders_db.{table.name}"  # this run's own orders table
        response = post(client, tenant, body)
    assert response.status_code == 201, response.json
    assert response.json["success"] is True
    assert response.json["message"] == "Job created successfully"
    data = response.json["data"]
    assert set(data) == {"job_id", "job_name", "status", "created_at", "next_run"}
    assert data["job_name"] == "sync_orders"
    assert (data["status"], data["next_run"]) == ("completed", None)
    assert data["created_at"].endswith("Z")


def test_a_future_window_is_scheduled_at_its_start(
    client: FlaskClient, tenant: Tenant, orders: str
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    body = job_body(
        "shop",
        orders,
        "orders_kb",
        start_time=start.replace(tzinfo=None).isoformat(),  # naive: UTC
        end_time=(start + timedelta(days=1)).isoformat(),
    )
    data = create_job(client, tenant, body)
    assert data["status"] == "scheduled"
    assert data["next_run"] == start.isoformat().replace("+00:00", "Z")


def test_a_started_window_runs_now_then_on_its_slots(
    client: FlaskClient, tenant: Tenant, orders: str
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    data = create_job(client, tenant, job_body("shop", orders, "orders_kb"))
    first = datetime.fromisoformat(data["next_run"].replace("Z", "+00:00"))
    assert before <= first <= datetime.now(UTC) + timedelta(seconds=1)


# -- every error code ------------------------------------------------------------------------------


def test_missing_and_malformed_fields_are_each_listed(
    client: FlaskClient, tenant: Tenant, orders: str
) -> None:
    response = post(client, tenant, {})
    details = assert_refused(response, "INVALID_REQUEST")
    assert sorted(details) == sorted(
        f"{name} is required"
        for name in (
            "job_name",
            "source_table",
            "kb_name",
            "content_columns",
            "filter_column",
            "interval",
            "start_time",
            "end_time",
        )
    )
    body = job_body("shop", orders, "orders_kb", content_columns="product", job_name=7)
    assert_refused(
        post(client, tenant, body),
        "INVALID_REQUEST",
        "job_name must be a string",
        "content_columns must be an array of strings",
    )
    body = job_body("shop", orders, "orders_kb", content_columns=[], colour="red")
    assert_refused(
        post(client, tenant, body), "INVALID_REQUEST", "content_columns must name", "colour"
    )
    assert_refused(
        client.post("/jobs/create", headers=tenant.headers(), json=[1]), "INVALID_REQUEST"
    )
    assert job_count(tenant) == 0


def test_the_seeds_own_error_example(client: FlaskClient, tenant: Tenant, orders: str) -> None:
    """job_name missing and the interval bad: one INVALID_REQUEST naming both."""
    body = job_body("shop", orders, "orders_kb", interval="every now and then")
    del body["job_name"]
    response = post(client, tenant, body)
    assert response.json["error"]["message"] == "Invalid job configuration"
    assert_refused(response, "INVALID_REQUEST", "job_name is required", "invalid interval format")


@pytest.mark.parametrize(
    "interval",
    ["30 SECONDS", "0 MINUTES", "1.5 HOURS", "-1 DAY", "10MINUTES", "MONTHLY", "", "31 DAYS"],
)
def test_intervals_outside_the_seeds_table_are_refused(
    client: FlaskClient, tenant: Tenant, orders: str, interval: str
) -> None:
    response = post(client, tenant, job_body("shop", orders, "orders_kb", interval=interval))
    if interval == "":
        assert_refused(response, "INVALID_REQUEST", "interval")
    else:
        assert_refused(response, "INVALID_INTERVAL", "interval")
    assert job_count(tenant) == 0


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [
        ("1 MINUTE", 60),
        ("5 MINUTES", 300),
        ("30 minutes", 1800),
        ("1 HOUR", 3600),
        ("6 HOURS", 21600),
        ("1 DAY", 86400),
        ("7 DAYS", 604800),
        ("HOURLY", 3600),
        ("DAILY", 86400),
        ("WEEKLY", 604800),
    ],
)
def test_every_interval_of_the_seeds_table_is_accepted(
    client: FlaskClient, tenant: Tenant, orders: str, interval: str, seconds: int
) -> None:
    name = create_job(client, tenant, job_body("shop", orders, "orders_kb", interval=interval))[
        "job_name"
    ]
    with session_scope() as session:
        job = session.scalar(select(SyncJob).where(SyncJob.name == name))
        assert job is not None and job.interval_seconds == seconds


@pytest.mark.parametrize(
    ("start", "end", "detail"),
    [
        ("yesterday", "2026-12-01T00:00:00", "start_time is not an ISO 8601 time"),
        ("2026-12-01T00:00:00", "2026-13-01T00:00:00", "end_time is not an ISO 8601 time"),
        ("2026-12-02T00:00:00", "2026-12-01T00:00:00", "end_time must be after start_time"),
        ("2026-12-01T00:00:00", "2026-12-01T00:00:00", "end_time must be after start_time"),
        ("2026-12-01T00:00:00", "2026-12-31T00:00:01", "at most 30 days"),
    ],
)
def test_bad_times_are_refused(
    client: FlaskClient, tenant: Tenant, orders: str, start: str, end: str, detail: str
) -> None:
    body = job_body("shop", orders, "orders_kb", start_time=start, end_time=end)
    assert_refused(post(client, tenant, body), "INVALID_DATETIME", detail)
    assert job_count(tenant) == 0


def test_thirty_days_and_offsets_are_accepted(
    client: FlaskClient, tenant: Tenant, orders: str
) -> None:
    body = job_body(
        "shop",
        orders,
        "orders_kb",
        start_time="2027-01-01T02:00:00+02:00",
        end_time="2027-01-31T00:00:00Z",
    )
    data = create_job(client, tenant, body)
    assert data["next_run"] == "2027-01-01T00:00:00Z"


def test_a_taken_name_is_a_duplicate(client: FlaskClient, tenant: Tenant, orders: str) -> None:
    body = job_body("shop", orders, "orders_kb")
    create_job(client, tenant, body)
    assert_refused(post(client, tenant, body), "DUPLICATE_JOB", body["job_name"])
    assert job_count(tenant) == 1


@pytest.mark.parametrize(
    ("source_table", "detail"),
    [
        ("orders", "source_table must be database.table"),
        ("shop.orders.extra", "source_table must be database.table"),
        ("nowhere.orders", "unknown database 'nowhere'"),
        ("shop.no_such_table", "does not exist in database 'shop'"),
    ],
)
def test_a_bad_table_is_invalid_table(
    client: FlaskClient, tenant: Tenant, orders: str, source_table: str, detail: str
) -> None:
    body = job_body("shop", orders, "orders_kb", source_table=source_table)
    assert_refused(post(client, tenant, body), "INVALID_TABLE", detail)


def test_an_unknown_kb_is_invalid_kb(client: FlaskClient, tenant: Tenant, orders: str) -> None:
    body = job_body("shop", orders, "no_such_kb")
    assert_refused(post(client, tenant, body), "INVALID_KB", "'no_such_kb' does not exist")


def test_columns_are_checked_against_the_reflected_table(
    client: FlaskClient, tenant: Tenant, orders: str
) -> None:
    body = job_body(
        "shop", orders, "orders_kb", content_columns=["product", "colour"], filter_column="when"
    )
    assert_refused(
        post(client, tenant, body),
        "INVALID_REQUEST",
        "content_columns: 'colour' is not a column",
        "filter_column: 'when' is not a column",
    )
    assert job_count(tenant) == 0


def test_over_the_active_job_limit_is_limit_exceeded(
    client: FlaskClient, tenant: Tenant, orders: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBYARD_KB_SYNC_MAX_ACTIVE_JOBS", "2")
    reset_settings_cache()
    try:
        first = create_job(client, tenant, job_body("shop", orders, "orders_kb"))
        create_job(client, tenant, job_body("shop", orders, "orders_kb"))
        assert_refused(
            post(client, tenant, job_body("shop", orders, "orders_kb")),
            "LIMIT_EXCEEDED",
            "at most 2 active jobs",
        )
        # A completed job is not active: its place is free again.
        with session_scope() as session:
            job = session.scalar(select(SyncJob).where(SyncJob.name == first["job_name"]))
            assert job is not None
            job.status = "completed"
        create_job(client, tenant, job_body("shop", orders, "orders_kb"))
    finally:
        monkeypatch.undo()
        reset_settings_cache()


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("source_table", "shop.orders; DROP TABLE orders", "INVALID_TABLE"),
        ("source_table", 'shop."orders"', "INVALID_TABLE"),
        ("source_table", "shop.pg_catalog.pg_class", "INVALID_TABLE"),
        ("content_columns", ["product", "description; DROP TABLE x"], "INVALID_REQUEST"),
        ("content_columns", ["product", '"product"'], "INVALID_REQUEST"),
        ("filter_column", "created_at) OR (1=1", "INVALID_REQUEST"),
        ("kb_name", "orders_kb' OR '1'='1", "INVALID_KB"),
        ("job_name", "x'; DROP TABLE sync_jobs; --", "INVALID_REQUEST"),
    ],
)
def test_injection_attempts_are_refused(
    client: FlaskClient, tenant: Tenant, orders: str, field: str, value: Any, code: str
) -> None:
    body = job_body("shop", orders, "orders_kb", **{field: value})
    assert_refused(post(client, tenant, body), code)
    assert job_count(tenant) == 0
    with session_scope() as session:
        assert inspect(session.connection()).has_table("sync_jobs")


# -- the rest of a job's life ----------------------------------------------------------------------


def test_list_get_pause_resume_delete(client: FlaskClient, tenant: Tenant, orders: str) -> None:
    name = create_job(client, tenant, job_body("shop", orders, "orders_kb", interval="1 HOUR"))[
        "job_name"
    ]
    headers = tenant.headers()
    listed = client.get("/jobs", headers=headers).json["data"]
    assert [j["job_name"] for j in listed] == [name]
    one = client.get(f"/jobs/{name}", headers=headers).json["data"]
    assert one["source_table"] == f"shop.{orders}" and one["kb_name"] == "orders_kb"
    assert (one["status"], one["last_run"], one["running"]) == ("scheduled", None, False)
    assert one["next_run"] is not None

    paused = client.post(f"/jobs/{name}/pause", headers=headers)
    assert paused.status_code == 200
    assert (paused.json["data"]["status"], paused.json["data"]["next_run"]) == ("paused", None)

    resumed = client.post(f"/jobs/{name}/resume", headers=headers).json["data"]
    assert resumed["status"] == "scheduled"
    # It never ran: its first slot is due now.
    assert datetime.fromisoformat(resumed["next_run"].replace("Z", "+00:00")) <= datetime.now(UTC)

    deleted = client.delete(f"/jobs/{name}", headers=headers)
    assert deleted.status_code == 200
    assert client.get(f"/jobs/{name}", headers=headers).status_code == 404


def test_resuming_a_job_that_ran_skips_the_missed_slots(
    client: FlaskClient, tenant: Tenant, orders: str
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5, minutes=30)
    body = job_body(
        "shop",
        orders,
        "orders_kb",
        interval="1 HOUR",
        start_time=start.isoformat(),
        end_time=(start + timedelta(days=1)).isoformat(),
    )
    name = create_job(client, tenant, body)["job_name"]
    run = client.post(f"/jobs/{name}/run", headers=tenant.headers())
    assert run.status_code == 202, run.json
    client.post(f"/jobs/{name}/pause", headers=tenant.headers())
    resumed = client.post(f"/jobs/{name}/resume", headers=tenant.headers()).json["data"]
    assert resumed["next_run"] == (start + timedelta(hours=6)).isoformat().replace("+00:00", "Z")


def test_run_now_starts_one_run_at_a_time(client: FlaskClient, tenant: Tenant, orders: str) -> None:
    name = create_job(client, tenant, job_body("shop", orders, "orders_kb"))["job_name"]
    first = client.post(f"/jobs/{name}/run", headers=tenant.headers())
    assert first.status_code == 202, first.json
    run_job_id = first.json["data"]["run_job_id"]
    assert first.json["data"]["running"] is True
    again = client.post(f"/jobs/{name}/run", headers=tenant.headers())
    assert again.status_code == 409
    assert again.json["error"]["code"] == "RUN_IN_PROGRESS"
    history = client.get(f"/jobs/{name}/history", headers=tenant.headers()).json["data"]
    assert [(h["job_id"], h["status"], h["trigger"]) for h in history] == [
        (run_job_id, "running", "manual")
    ]
    # The run is a kb_sync Job of the engine: Valpay's list of every type reads it, not
    # Mentionlab's (AI runs only).
    bearer = {"Authorization": f"Bearer {tenant.token}"}
    job = client.get(f"/v1/jobs/{run_job_id}", headers=bearer)
    assert job.status_code == 200 and job.json["data"]["jobType"] == "kb_sync"
    assert client.get(f"/api/jobs/{run_job_id}", headers=tenant.headers()).status_code == 404
    # Deleting the job cancels its run.
    client.delete(f"/jobs/{name}", headers=tenant.headers())
    assert client.get(f"/v1/jobs/{run_job_id}", headers=bearer).json["data"]["status"] == (
        "canceled"
    )
    with session_scope() as session:
        assert session.get(SyncRun, uuid.UUID(run_job_id)) is None


def test_a_database_or_kb_in_use_cannot_be_deleted(
    client: FlaskClient, tenant: Tenant, orders: str
) -> None:
    create_job(client, tenant, job_body("shop", orders, "orders_kb"))
    response = client.delete("/databases/shop", headers=tenant.headers())
    assert response.status_code == 409 and response.json["error"]["code"] == "DATABASE_IN_USE"
    response = client.delete("/knowledge_bases/orders_kb", headers=tenant.headers())
    assert response.status_code == 409 and response.json["error"]["code"] == "KB_IN_USE"


def test_another_tenants_job_is_not_found(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant, orders: str
) -> None:
    name = create_job(client, tenant, job_body("shop", orders, "orders_kb"))["job_name"]
    other = other_tenant.headers()
    for method, path in [
        ("get", f"/jobs/{name}"),
        ("delete", f"/jobs/{name}"),
        ("post", f"/jobs/{name}/pause"),
        ("post", f"/jobs/{name}/resume"),
        ("post", f"/jobs/{name}/run"),
        ("get", f"/jobs/{name}/history"),
    ]:
        response = getattr(client, method)(path, headers=other)
        assert response.status_code == 404, (path, response.json)
        assert response.json["error"]["code"] == "NOT_FOUND"
    assert client.get("/jobs", headers=other).json["data"] == []
    # Its names are its own: the other tenant may use the same job name.
    assert_refused(
        post(client, other_tenant, job_body("shop", orders, "orders_kb", job_name=name)),
        "INVALID_KB",
    )


def test_unauthenticated_is_refused_in_the_envelope(client: FlaskClient) -> None:
    response = client.post("/jobs/create", json=seed_example())
    assert response.status_code == 401
    assert response.json["success"] is False and response.json["error"]["code"] == "UNAUTHORIZED"
