"""Rotating the data-source encryption key: read with the old key while both are set,
`jobyard rotate-source-key` re-encrypts, then the old key can go."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from shared.cli import cli
from shared.db import session_scope
from shared.errors import InvalidInput
from shared.kb import sources
from shared.kb.models import DataSource
from shared.settings import reset_settings_cache
from tests.support import Tenant

URL = "postgresql+psycopg://reader:s3cret@db.example.com:5432/orders"


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.undo()
    reset_settings_cache()


def use_keys(monkeypatch: pytest.MonkeyPatch, current: bytes, *previous: bytes) -> None:
    monkeypatch.setenv("JOBYARD_DATA_SOURCE_KEY", current.decode())
    monkeypatch.setenv("JOBYARD_DATA_SOURCE_PREVIOUS_KEYS", ",".join(k.decode() for k in previous))
    reset_settings_cache()


def stored(tenant: Tenant) -> uuid.UUID:
    with session_scope() as session:
        source = DataSource(
            organisation_id=tenant.org_id,
            name=f"orders_{uuid.uuid4().hex[:8]}",
            engine="postgresql",
            host="db.example.com",
            database="orders",
            url_encrypted=sources.encrypt(URL),
        )
        session.add(source)
        session.flush()
        source_id: uuid.UUID = source.id
    return source_id


def token_of(source_id: uuid.UUID) -> str:
    with session_scope() as session:
        source = session.get(DataSource, source_id)
        assert source is not None
        return source.url_encrypted


def test_rotation_re_encrypts_every_source_with_the_new_key(
    tenant: Tenant, keys: pytest.MonkeyPatch
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    use_keys(keys, old)
    source_id = stored(tenant)
    before = token_of(source_id)

    use_keys(keys, new)  # the new key alone cannot read what the old one wrote
    with pytest.raises(InvalidInput):
        sources.decrypt(before)

    use_keys(keys, new, old)  # both: sources stay readable during the rotation
    assert sources.decrypt(before) == URL
    result = CliRunner().invoke(cli, ["rotate-source-key"])
    assert "re-encrypted" in result.output
    # Sources other tests stored under other keys are reported unreadable; not this one.
    assert result.exit_code == 0 or "no configured key can read" in result.output
    assert str(source_id) not in result.output
    after = token_of(source_id)
    assert after != before
    assert Fernet(new).decrypt(after.encode()).decode() == URL

    use_keys(keys, new)  # the old key can go
    assert sources.decrypt(after) == URL


def test_a_source_no_key_can_read_is_reported_and_left_alone(
    tenant: Tenant, keys: pytest.MonkeyPatch
) -> None:
    lost, new = Fernet.generate_key(), Fernet.generate_key()
    use_keys(keys, lost)
    source_id = stored(tenant)
    before = token_of(source_id)
    use_keys(keys, new)
    result = CliRunner().invoke(cli, ["rotate-source-key"])
    assert result.exit_code == 1
    assert str(source_id) in result.output
    assert token_of(source_id) == before
