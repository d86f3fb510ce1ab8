"""Authentication (x-api-key or bearer JWT) and the x-organisation-id context header."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from shared.db import session_scope
from shared.models import ApiKey, utcnow
from tests.api.conftest import Person
from tests.api.helpers import (
    BAD_TOKEN,
    MISSING_CREDENTIALS,
    SEED_BODY,
    assert_error,
    bearer,
    make_token,
)
from tests.support import Tenant

ZERO = "00000000-0000-0000-0000-000000000000"

# Every route of the family: all of them authenticate before doing anything else.
PROTECTED = [
    ("GET", "/api/projects/list"),
    ("POST", "/api/projects"),
    ("PATCH", "/api/projects"),
    ("GET", f"/api/projects/{ZERO}"),
    ("POST", "/api/queries"),
    ("POST", "/api/queries/many"),
    ("POST", "/api/queries/list"),
    ("GET", f"/api/queries/{ZERO}"),
    ("POST", "/api/jobs/trigger"),
    ("POST", "/api/jobs/list"),
    ("GET", f"/api/jobs/{ZERO}"),
    ("GET", f"/api/jobs/{ZERO}/executions"),
    ("GET", f"/api/v1/job-executions/{ZERO}"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_route_needs_credentials(
    client: FlaskClient, tenant: Tenant, method: str, path: str
) -> None:
    """Without any credential every route answers 401 in the envelope."""
    response = client.open(
        path, method=method, json=SEED_BODY, headers={"x-project-id": str(tenant.project_id)}
    )
    assert_error(response, 401, MISSING_CREDENTIALS)


def test_wrong_api_key_is_401(client: FlaskClient) -> None:
    """An API key nobody issued is refused."""
    response = client.get("/api/projects/list", headers={"x-api-key": "jy_not-a-real-key"})
    assert_error(response, 401, "Invalid API key")


def test_revoked_api_key_is_401(client: FlaskClient, tenant: Tenant) -> None:
    """A revoked key stops working."""
    assert (
        client.get("/api/projects/list", headers={"x-api-key": tenant.api_key}).status_code == 200
    )
    with session_scope() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.organisation_id == tenant.org_id)
            .values(revoked_at=utcnow())
        )
    response = client.get("/api/projects/list", headers={"x-api-key": tenant.api_key})
    assert_error(response, 401, "Invalid API key")


def test_valid_api_key_works(client: FlaskClient, tenant: Tenant) -> None:
    """The organisation's key lists the organisation's projects."""
    response = client.get("/api/projects/list", headers={"x-api-key": tenant.api_key})
    assert response.status_code == 200
    assert [p["id"] for p in response.json] == [str(tenant.project_id)]


def test_valid_bearer_works(client: FlaskClient, tenant: Tenant) -> None:
    """A member's JWT lists the organisation's projects."""
    response = client.get("/api/projects/list", headers=bearer(tenant.token))
    assert response.status_code == 200
    assert [p["id"] for p in response.json] == [str(tenant.project_id)]


def test_pyjwt_token_signed_with_the_secret_works(client: FlaskClient, tenant: Tenant) -> None:
    """A token minted independently with PyJWT and the shared secret is accepted."""
    response = client.get(
        "/api/projects/list", headers=bearer(make_token(tenant.user_id, tenant.org_id))
    )
    assert response.status_code == 200


def test_bearer_scheme_is_case_insensitive(client: FlaskClient, tenant: Tenant) -> None:
    """``bearer`` in lower case is the same scheme."""
    response = client.get("/api/projects/list", headers={"Authorization": f"bearer {tenant.token}"})
    assert response.status_code == 200


def test_other_authorization_scheme_is_not_a_bearer(client: FlaskClient, tenant: Tenant) -> None:
    """A valid JWT under another scheme is not a credential."""
    response = client.get("/api/projects/list", headers={"Authorization": f"Token {tenant.token}"})
    assert_error(response, 401, MISSING_CREDENTIALS)


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.e30.",  # header.payload with an empty signature
    ],
)
def test_malformed_jwt_is_401(client: FlaskClient, token: str) -> None:
    """Garbage in the bearer slot is refused."""
    assert_error(client.get("/api/projects/list", headers=bearer(token)), 401, BAD_TOKEN)


def test_expired_jwt_is_401(client: FlaskClient, tenant: Tenant) -> None:
    """A token whose ``exp`` has passed is refused."""
    token = make_token(tenant.user_id, tenant.org_id, expires_in=timedelta(seconds=-30))
    assert_error(client.get("/api/projects/list", headers=bearer(token)), 401, BAD_TOKEN)


def test_wrong_secret_jwt_is_401(client: FlaskClient, tenant: Tenant) -> None:
    """A token signed with another secret is refused."""
    token = make_token(tenant.user_id, tenant.org_id, secret="another-secret-" + "x" * 40)
    assert_error(client.get("/api/projects/list", headers=bearer(token)), 401, BAD_TOKEN)


@pytest.mark.parametrize("claim", ["sub", "org", "exp"])
def test_jwt_missing_a_required_claim_is_401(
    client: FlaskClient, tenant: Tenant, claim: str
) -> None:
    """``sub``, ``org`` and ``exp`` are all required."""
    token = make_token(tenant.user_id, tenant.org_id, drop=(claim,))
    assert_error(client.get("/api/projects/list", headers=bearer(token)), 401, BAD_TOKEN)


def test_jwt_with_non_uuid_subject_is_401(client: FlaskClient, tenant: Tenant) -> None:
    """A ``sub`` that is not a user id is refused, not a 500."""
    token = make_token("jane", tenant.org_id)
    assert_error(client.get("/api/projects/list", headers=bearer(token)), 401, BAD_TOKEN)


def test_unsigned_jwt_is_401(client: FlaskClient, tenant: Tenant) -> None:
    """``alg: none`` is never accepted."""
    token = make_token(tenant.user_id, tenant.org_id, algorithm="none", secret="")
    assert_error(client.get("/api/projects/list", headers=bearer(token)), 401, BAD_TOKEN)


def test_jwt_of_non_member_is_401(client: FlaskClient, outsider: Person) -> None:
    """A well-signed token for an organisation the user is not a member of is refused."""
    assert_error(client.get("/api/projects/list", headers=bearer(outsider.token)), 401, BAD_TOKEN)


def test_jwt_of_unknown_user_is_401(client: FlaskClient, tenant: Tenant) -> None:
    """A well-signed token for a user that does not exist is refused."""
    token = make_token(uuid.uuid4(), tenant.org_id)
    assert_error(client.get("/api/projects/list", headers=bearer(token)), 401, BAD_TOKEN)


def test_jwt_for_other_org_is_401(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """A member of one organisation cannot sign a token into another."""
    token = make_token(tenant.user_id, other_tenant.org_id)
    assert_error(client.get("/api/projects/list", headers=bearer(token)), 401, BAD_TOKEN)


def test_api_key_wins_over_bearer(client: FlaskClient, tenant: Tenant) -> None:
    """With both credentials the API key decides, so a wrong key is refused."""
    headers = {"x-api-key": "jy_wrong", **bearer(tenant.token)}
    assert_error(client.get("/api/projects/list", headers=headers), 401, "Invalid API key")


def test_other_organisation_header_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Naming another organisation in x-organisation-id hides it behind a 404."""
    headers = {"x-api-key": tenant.api_key, "x-organisation-id": str(other_tenant.org_id)}
    response = client.get("/api/projects/list", headers=headers)
    assert_error(response, 404, f"Organisation {other_tenant.org_id} not found")


def test_other_organisation_header_is_404_for_bearer(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """The organisation check applies to JWTs too."""
    headers = {**bearer(tenant.token), "x-organisation-id": str(other_tenant.org_id)}
    response = client.get("/api/projects/list", headers=headers)
    assert_error(response, 404, f"Organisation {other_tenant.org_id} not found")


@pytest.mark.parametrize("value", ["not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g"])
def test_malformed_organisation_header_is_400(
    client: FlaskClient, tenant: Tenant, value: str
) -> None:
    """A malformed x-organisation-id is a validation error naming the header."""
    headers = {"x-api-key": tenant.api_key, "x-organisation-id": value}
    response = client.get("/api/projects/list", headers=headers)
    assert_error(response, 400, ["x-organisation-id: must be a UUID"])


def test_own_organisation_header_is_accepted(client: FlaskClient, tenant: Tenant) -> None:
    """The caller's own organisation id (any case) passes the check."""
    headers = {"x-api-key": tenant.api_key, "x-organisation-id": str(tenant.org_id).upper()}
    assert client.get("/api/projects/list", headers=headers).status_code == 200


def test_credentials_are_checked_before_the_organisation(
    client: FlaskClient, other_tenant: Tenant
) -> None:
    """Without credentials an organisation header reveals nothing: 401, not 404."""
    response = client.get(
        "/api/projects/list", headers={"x-organisation-id": str(other_tenant.org_id)}
    )
    assert_error(response, 401, MISSING_CREDENTIALS)
