"""Smart DB's ``/databases``: source databases checked on creation, stored encrypted,
never echoed, in the family's own envelope."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.db import session_scope
from shared.models import DataSource
from shared.settings import reset_settings_cache
from tests.support import Tenant

SOURCE_URL = "postgresql://postgres:s3cret-pass@127.0.0.1:5432/postgres"


@pytest.fixture
def private_allowed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The source databases of the tests run on 127.0.0.1."""
    monkeypatch.setenv("JOBYARD_ALLOW_PRIVATE_URLS", "true")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def create(client: FlaskClient, tenant: Tenant, body: dict[str, Any]) -> Any:
    return client.post("/databases", headers=tenant.headers(), json=body)


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.json
    body = response.json
    assert body["success"] is False and body["error"]["code"] == code, body
    assert body["error"]["message"] and isinstance(body["error"]["details"], list)


def test_register_list_get_delete(
    client: FlaskClient, tenant: Tenant, private_allowed: None, tmp_path: Path
) -> None:
    response = create(client, tenant, {"name": "orders_db", "url": SOURCE_URL})
    assert response.status_code == 201, response.json
    assert response.json["success"] is True and response.json["message"]
    data = response.json["data"]
    assert (data["name"], data["engine"], data["host"], data["database"]) == (
        "orders_db",
        "postgresql",
        "127.0.0.1",
        "postgres",
    )
    assert "s3cret" not in response.get_data(as_text=True)
    with session_scope() as session:  # encrypted at rest
        stored = (
            session.query(DataSource)
            .filter(DataSource.name == "orders_db", DataSource.organisation_id == tenant.org_id)
            .one()
        )
        assert "s3cret" not in stored.url_encrypted and "postgres" not in stored.url_encrypted

    path = tmp_path / "local.db"
    sqlite3.connect(path).close()
    assert create(client, tenant, {"name": "local", "url": f"sqlite:///{path}"}).status_code == 201

    listed = client.get("/databases", headers=tenant.headers()).json["data"]
    assert [d["name"] for d in listed] == ["local", "orders_db"]
    assert "s3cret" not in client.get("/databases", headers=tenant.headers()).get_data(True)
    one = client.get("/databases/orders_db", headers=tenant.headers())
    assert one.status_code == 200 and one.json["data"]["name"] == "orders_db"
    deleted = client.delete("/databases/orders_db", headers=tenant.headers())
    assert deleted.status_code == 200 and deleted.json["success"] is True
    assert_error(client.get("/databases/orders_db", headers=tenant.headers()), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "x"},
        {"url": SOURCE_URL},
        {"name": "bad-name", "url": SOURCE_URL},
        {"name": "1st", "url": SOURCE_URL},
        {"name": "x; DROP TABLE jobs", "url": SOURCE_URL},
        {"name": "x", "url": "not a url"},
        {"name": "x", "url": "oracle://u:p@127.0.0.1/db"},
        {"name": "x", "url": "postgresql://postgres@127.0.0.1:1/postgres"},  # nothing there
        {"name": "x", "url": "postgresql://postgres@127.0.0.1:5432/no_such_db"},
    ],
)
def test_bad_input_is_invalid_request_and_registers_nothing(
    client: FlaskClient, tenant: Tenant, private_allowed: None, body: dict[str, Any]
) -> None:
    assert_error(create(client, tenant, body), 400, "INVALID_REQUEST")
    with session_scope() as session:
        assert session.query(DataSource).filter_by(organisation_id=tenant.org_id).count() == 0


def test_a_duplicate_name_is_409(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant, private_allowed: None
) -> None:
    assert create(client, tenant, {"name": "orders_db", "url": SOURCE_URL}).status_code == 201
    assert_error(
        create(client, tenant, {"name": "orders_db", "url": SOURCE_URL}), 409, "DUPLICATE_DATABASE"
    )
    # Names are per organisation; another's are invisible.
    assert create(client, other_tenant, {"name": "orders_db", "url": SOURCE_URL}).status_code == 201
    assert_error(client.delete("/databases/x", headers=other_tenant.headers()), 404, "NOT_FOUND")


def test_private_addresses_and_sqlite_files_are_refused_by_default(
    client: FlaskClient, tenant: Tenant, tmp_path: Path
) -> None:
    for url in (SOURCE_URL, "postgresql://u:p@localhost/db", f"sqlite:///{tmp_path}/x.db"):
        assert_error(create(client, tenant, {"name": "x", "url": url}), 400, "INVALID_REQUEST")
    with session_scope() as session:
        assert session.query(DataSource).filter_by(organisation_id=tenant.org_id).count() == 0


def test_credentials_are_required(client: FlaskClient) -> None:
    assert_error(client.get("/databases"), 401, "UNAUTHORIZED")
