"""Fixtures of the API tests: more people, an empty project, real-provider settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from shared.accounts import auth
from shared.accounts import organisations as tenancy
from shared.db import session_scope
from shared.mentionlab import projects
from shared.settings import reset_settings_cache
from tests.support import Tenant

PROVIDER_SETTINGS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "PERPLEXITY_API_KEY",
    "DEEPSEEK_API_KEY",
    "SEARCH_ENDPOINT_URL",
)


@dataclass
class Person:
    """A user and a token for them."""

    user_id: uuid.UUID
    token: str


@pytest.fixture
def teammate(tenant: Tenant) -> Person:
    """A second member of the tenant's organisation, with a JWT."""
    with session_scope() as session:
        user = tenancy.create_user(
            session, f"{uuid.uuid4().hex[:10]}@example.test", "Sam", "Roe", tenant.org_id
        )
        user_id = user.id
    return Person(user_id, auth.issue_token(user_id, tenant.org_id))


@pytest.fixture
def outsider(tenant: Tenant) -> Person:
    """A user who is a member of no organisation, holding a well-signed token for the tenant's."""
    with session_scope() as session:
        user = tenancy.create_user(session, f"{uuid.uuid4().hex[:10]}@example.test", "Eve", "X")
        user_id = user.id
    return Person(user_id, auth.issue_token(user_id, tenant.org_id))


@pytest.fixture
def empty_project(tenant: Tenant) -> uuid.UUID:
    """A project of the tenant's organisation without any query."""
    with session_scope() as session:
        project = projects.create_project(
            session, auth.Principal(tenant.org_id, tenant.user_id), {"name": "Empty"}
        )
        return project.id


@pytest.fixture
def real_providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """JOBYARD_SIMULATE=false and no provider configured; restored afterwards."""
    monkeypatch.setenv("JOBYARD_SIMULATE", "false")
    for name in PROVIDER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"JOBYARD_{name}", raising=False)
    reset_settings_cache()
    try:
        yield monkeypatch
    finally:
        monkeypatch.undo()
        reset_settings_cache()
