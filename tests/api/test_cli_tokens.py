"""``jobyard create-token``: signs with the API's key (var/jobyard.env when the shell has
none), never with the built-in development key, and only for a member unless told."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

import shared.cli
from shared.accounts import organisations as tenancy
from shared.cli import cli
from shared.db import session_scope
from shared.models import Membership
from shared.settings import reset_settings_cache
from tests.support import Tenant

API_KEY = "test-secret-key-for-jobyard-tests-only-0123456789"  # tests/conftest.py's


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A var/jobyard.env of our own (the checkout's is not read), and restored settings."""
    path = tmp_path / "jobyard.env"
    monkeypatch.setattr(shared.cli, "LOCAL_ENV", path)
    yield path
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def outsider() -> uuid.UUID:
    with session_scope() as session:
        user = tenancy.create_user(session, f"{uuid.uuid4().hex[:10]}@example.test", "Out", "Sider")
        return user.id


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_a_fresh_shell_signs_with_make_ups_key(
    client: FlaskClient, tenant: Tenant, local_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SECRET_KEY in the shell: the key run-local.sh wrote is used, and the API (which
    runs with that key) accepts the token."""
    monkeypatch.delenv("SECRET_KEY")
    local_env.write_text(
        f"# Local settings written by 'make up'\nexport SECRET_KEY=\"${{SECRET_KEY:-{API_KEY}}}\"\n"
    )
    code, output = invoke(
        "create-token", "--user", str(tenant.user_id), "--org", str(tenant.org_id)
    )
    assert code == 0, output
    token = output.strip().splitlines()[-1]
    reply = client.get(
        f"/api/projects/{tenant.project_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 200, reply.json


def test_the_development_key_is_refused(
    tenant: Tenant, local_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY")  # and no var/jobyard.env
    reset_settings_cache()
    code, output = invoke(
        "create-token", "--user", str(tenant.user_id), "--org", str(tenant.org_id)
    )
    assert code == 1
    assert "SECRET_KEY is not set" in output and "eyJ" not in output


def test_a_non_member_is_refused_unless_added_explicitly(
    tenant: Tenant, outsider: uuid.UUID, local_env: Path
) -> None:
    def membership() -> Membership | None:
        with session_scope() as session:
            return session.get(Membership, (outsider, tenant.org_id))

    code, output = invoke("create-token", "--user", str(outsider), "--org", str(tenant.org_id))
    assert code == 1 and "is not a member of organisation" in output, output
    assert "--add-member" in output and "eyJ" not in output
    assert membership() is None  # nothing changed
    code, output = invoke(
        "create-token", "--user", str(outsider), "--org", str(tenant.org_id), "--add-member"
    )
    assert code == 0 and output.startswith("eyJ"), output
    assert membership() is not None
    # A member needs no flag.
    code, output = invoke(
        "create-token", "--user", str(tenant.user_id), "--org", str(tenant.org_id)
    )
    assert code == 0 and output.startswith("eyJ"), output
    code, output = invoke("create-token", "--user", str(outsider), "--org", str(uuid.uuid4()))
    assert code == 1 and "organisation" in output and "not found" in output
