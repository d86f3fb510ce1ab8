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
from shared.kb.models import DataSource
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


# -- what a source URL may hold (shared/kb/source_urls.py) ------------------------------------

MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/mysql"


@pytest.mark.parametrize(
    ("url", "option"),
    [
        (f"{MYSQL_URL}?local_infile=1", "local_infile"),
        (f"{MYSQL_URL}?unix_socket=/run/mysqld/mysqld.sock", "unix_socket"),
        (f"{MYSQL_URL}?read_default_file=/etc/mysql/my.cnf", "read_default_file"),
        (f"{MYSQL_URL}?read_default_group=client", "read_default_group"),
        (f"{MYSQL_URL}?init_command=SET+GLOBAL+x%3D1", "init_command"),
        (f"{MYSQL_URL}?bind_address=127.0.0.1", "bind_address"),
        (f"{MYSQL_URL}?charset=utf8mb4&client_flag=128", "client_flag"),
        (f"{SOURCE_URL}?host=127.0.0.1", "host"),
        (f"{SOURCE_URL}?hostaddr=127.0.0.1", "hostaddr"),
        (f"{SOURCE_URL}?port=5432", "port"),
        (f"{SOURCE_URL}?service=prod", "service"),
        (f"{SOURCE_URL}?passfile=/root/.pgpass", "passfile"),
        (f"{SOURCE_URL}?options=-c+statement_timeout%3D0", "options"),
        (f"{SOURCE_URL}?target_session_attrs=any", "target_session_attrs"),
        (f"{SOURCE_URL}?sslmode=require&Host=x", "Host"),
        ("sqlite:///tmp/x.db?mode=ro", "mode"),
    ],
)
def test_an_option_not_accepted_is_named_in_a_400(
    client: FlaskClient, tenant: Tenant, private_allowed: None, url: str, option: str
) -> None:
    response = create(client, tenant, {"name": "x", "url": url})
    assert_error(response, 400, "INVALID_REQUEST")
    assert f"not accepted: {option} " in response.json["error"]["message"]
    assert f"url: option {option!r} is not accepted" in response.json["error"]["details"]
    with session_scope() as session:
        assert session.query(DataSource).filter_by(organisation_id=tenant.org_id).count() == 0


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://postgres@127.0.0.1,127.0.0.2/postgres", "several hosts"),
        ("postgresql://postgres@127.0.0.1:5432,127.0.0.2:5432/postgres", "port"),
        ("postgresql://postgres@127.0.0.1:notaport/postgres", "port"),
        ("postgresql://postgres@127.0.0.1:70000/postgres", "port"),
        ("postgresql://postgres@%2Ftmp/postgres", "host"),
        (f"{SOURCE_URL}?sslmode=please", "sslmode"),
        (f"{SOURCE_URL}?sslmode=require&sslmode=disable", "sslmode"),
        (f"{SOURCE_URL}?connect_timeout=0", "connect_timeout"),
        (f"{MYSQL_URL}?ssl_verify_cert=maybe", "ssl_verify_cert"),
        (f"{MYSQL_URL}?charset=utf8%3BDROP", "charset"),
        (f"{MYSQL_URL}?charset=utf8%0A", "charset"),
        (f"{SOURCE_URL}?connect_timeout=%C2%B2", "connect_timeout"),
    ],
)
def test_a_bad_host_port_or_option_value_is_a_400_naming_it(
    client: FlaskClient, tenant: Tenant, private_allowed: None, url: str, named: str
) -> None:
    response = create(client, tenant, {"name": "x", "url": url})
    assert_error(response, 400, "INVALID_REQUEST")
    assert named in response.json["error"]["message"]


def test_accepted_options_reach_the_driver(
    client: FlaskClient, tenant: Tenant, private_allowed: None
) -> None:
    """The allowlist keeps what a sync needs working: TLS mode, timeout, encoding."""
    url = f"{SOURCE_URL}?sslmode=disable&connect_timeout=3&client_encoding=utf8"
    assert create(client, tenant, {"name": "pg", "url": url}).status_code == 201
    url = f"{MYSQL_URL}?charset=utf8mb4&connect_timeout=3"
    assert create(client, tenant, {"name": "my", "url": url}).status_code == 201


@pytest.fixture
def certs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """JOBYARD_SOURCE_CERTS_DIR with a CA file in it, and a file beside it."""
    directory = tmp_path / "certs"
    directory.mkdir()
    (directory / "ca.pem").write_text("not really a certificate")
    (tmp_path / "outside.pem").write_text("not in the directory")
    (directory / "escape.pem").symlink_to(tmp_path / "outside.pem")
    monkeypatch.setenv("JOBYARD_SOURCE_CERTS_DIR", str(directory))
    reset_settings_cache()
    yield directory
    monkeypatch.undo()
    reset_settings_cache()


def test_certificate_options_name_files_of_the_certificate_directory_only(
    client: FlaskClient, tenant: Tenant, private_allowed: None, certs_dir: Path
) -> None:
    # sslmode=disable: libpq never opens the file, so a placeholder CA is enough here.
    for name, value in (("relative", "ca.pem"), ("absolute", str(certs_dir / "ca.pem"))):
        url = f"{SOURCE_URL}?sslmode=disable&sslrootcert={value}"
        assert create(client, tenant, {"name": name, "url": url}).status_code == 201, value
    # The host's CA store: accepted, and refused only by the test server (it has no TLS).
    url = f"{SOURCE_URL}?sslmode=verify-full&sslrootcert=system"
    response = create(client, tenant, {"name": "system", "url": url})
    assert_error(response, 400, "INVALID_REQUEST")
    assert response.json["error"]["message"].startswith("cannot connect to the database")
    for value in (
        "../outside.pem",
        str(certs_dir.parent / "outside.pem"),
        "escape.pem",
        "/etc/passwd",
        "missing.pem",
        ".",
    ):
        for option in ("sslrootcert", "sslcert", "sslkey"):
            url = f"{SOURCE_URL}?sslmode=disable&{option}={value}"
            response = create(client, tenant, {"name": "x", "url": url})
            assert_error(response, 400, "INVALID_REQUEST")
            assert option in response.json["error"]["message"], (option, value)
    response = create(client, tenant, {"name": "x", "url": f"{MYSQL_URL}?ssl_ca=/etc/passwd"})
    assert_error(response, 400, "INVALID_REQUEST")
    assert "ssl_ca" in response.json["error"]["message"]


def test_without_a_certificate_directory_no_file_is_accepted(
    client: FlaskClient, tenant: Tenant, private_allowed: None, tmp_path: Path
) -> None:
    (tmp_path / "ca.pem").write_text("x")
    for url in (f"{SOURCE_URL}?sslrootcert={tmp_path}/ca.pem", f"{MYSQL_URL}?ssl_key=/etc/passwd"):
        response = create(client, tenant, {"name": "x", "url": url})
        assert_error(response, 400, "INVALID_REQUEST")
        assert "JOBYARD_SOURCE_CERTS_DIR" in response.json["error"]["message"]
