"""Projects: create, list, get and PATCH (x-project-id), within one organisation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.api.helpers import assert_error, assert_recent_timestamp, validation_messages
from tests.support import Tenant

FULL: dict[str, Any] = {
    "name": "Initrode",
    "description": "Paper and staplers",
    "website": "https://initrode.example",
    "industry": "Office supplies",
    "nameAliases": ["Initrode Inc", "IR"],
    "competitors": ["Globex", "Acme"],
    "llmProviders": ["gpt-4.1-mini", "sonar"],
    "executionCount": 5,
    "recurrence": "weekly",
    "recurrenceStatus": "paused",
}


def create(client: FlaskClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/projects", headers=tenant.headers(project=False), json=body)
    assert response.status_code == 201, response.json
    project: dict[str, Any] = response.json
    return project


def test_create_with_defaults(client: FlaskClient, tenant: Tenant) -> None:
    """Only a name: every other field takes its documented default, in camelCase."""
    project = create(client, tenant, {"name": "Hooli"})
    assert set(project) == {
        "id",
        "organisation",
        "name",
        "description",
        "website",
        "industry",
        "nameAliases",
        "competitors",
        "llmProviders",
        "executionCount",
        "recurrence",
        "recurrenceStatus",
        "webSearch",
        "createdAt",
        "updatedAt",
    }
    uuid.UUID(project["id"])
    assert project["organisation"] == str(tenant.org_id)
    assert project["name"] == "Hooli"
    assert (project["description"], project["website"], project["industry"]) == ("", "", "")
    assert project["nameAliases"] == [] and project["competitors"] == []
    assert project["llmProviders"] == []
    assert project["executionCount"] == 3
    assert project["recurrence"] == "manual"
    assert project["recurrenceStatus"] == "active"
    assert project["webSearch"] is None  # the provider's setting
    assert_recent_timestamp(project["createdAt"])
    assert_recent_timestamp(project["updatedAt"])


def test_create_with_every_field(client: FlaskClient, tenant: Tenant) -> None:
    """Every writable field is stored and returned under its camelCase name."""
    project = create(client, tenant, FULL)
    assert {k: project[k] for k in FULL} == FULL


def test_create_then_get(client: FlaskClient, tenant: Tenant) -> None:
    """GET /api/projects/{id} returns what was created."""
    project = create(client, tenant, FULL)
    response = client.get(f"/api/projects/{project['id']}", headers=tenant.headers(project=False))
    assert response.status_code == 200
    assert response.json == project


def test_create_by_bearer_lands_in_the_token_organisation(
    client: FlaskClient, tenant: Tenant
) -> None:
    """A project created with a JWT belongs to the token's organisation."""
    response = client.post(
        "/api/projects", headers=tenant.headers(bearer=True, project=False), json={"name": "B"}
    )
    assert response.status_code == 201
    assert response.json["organisation"] == str(tenant.org_id)


def test_list_is_scoped_and_newest_first(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """The list holds the organisation's projects only, newest first."""
    first = create(client, tenant, {"name": "First"})
    second = create(client, tenant, {"name": "Second"})
    response = client.get("/api/projects/list", headers=tenant.headers(project=False))
    assert response.status_code == 200
    ids = [p["id"] for p in response.json]
    assert ids == [second["id"], first["id"], str(tenant.project_id)]
    assert str(other_tenant.project_id) not in ids
    assert response.json[0] == second


def test_patch_via_project_header(client: FlaskClient, tenant: Tenant) -> None:
    """PATCH changes only the given fields of the x-project-id project."""
    before = client.get(f"/api/projects/{tenant.project_id}", headers=tenant.headers()).json
    response = client.patch(
        "/api/projects",
        headers=tenant.headers(),
        json={"description": "Rockets", "recurrence": "daily", "executionCount": 7},
    )
    assert response.status_code == 200, response.json
    after = response.json
    assert after["id"] == str(tenant.project_id)
    assert (after["description"], after["recurrence"], after["executionCount"]) == (
        "Rockets",
        "daily",
        7,
    )
    untouched = {k: v for k, v in before.items() if k not in {"description", "recurrence"}}
    untouched.pop("executionCount")
    untouched.pop("updatedAt")
    assert {k: after[k] for k in untouched} == untouched
    assert after["updatedAt"] >= before["updatedAt"]
    again = client.get(f"/api/projects/{tenant.project_id}", headers=tenant.headers()).json
    assert again == after


def test_patch_with_empty_body_changes_nothing(client: FlaskClient, tenant: Tenant) -> None:
    """An empty PATCH is valid and leaves the project as it was."""
    before = client.get(f"/api/projects/{tenant.project_id}", headers=tenant.headers()).json
    response = client.patch("/api/projects", headers=tenant.headers(), json={})
    assert response.status_code == 200
    assert {k: v for k, v in response.json.items() if k != "updatedAt"} == {
        k: v for k, v in before.items() if k != "updatedAt"
    }


def test_patch_without_project_header_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """PATCH needs to know which project: x-project-id is required."""
    response = client.patch(
        "/api/projects", headers=tenant.headers(project=False), json={"name": "X"}
    )
    assert_error(response, 400, ["x-project-id: header is required"])


def test_patch_with_malformed_project_header_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """A malformed x-project-id is a validation error."""
    headers = {**tenant.headers(), "x-project-id": "nope"}
    response = client.patch("/api/projects", headers=headers, json={"name": "X"})
    assert_error(response, 400, ["x-project-id: must be a UUID"])


def test_patch_other_tenants_project_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's project cannot be changed, and it is left untouched."""
    headers = {**tenant.headers(), "x-project-id": str(other_tenant.project_id)}
    response = client.patch("/api/projects", headers=headers, json={"name": "Hijacked"})
    assert_error(response, 404, f"Project {other_tenant.project_id} not found")
    theirs = client.get(f"/api/projects/{other_tenant.project_id}", headers=other_tenant.headers())
    assert theirs.json["name"] == "Other"


def test_get_other_tenants_project_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's project id in the path is a 404."""
    response = client.get(f"/api/projects/{other_tenant.project_id}", headers=tenant.headers())
    assert_error(response, 404, f"Project {other_tenant.project_id} not found")


def test_get_unknown_project_is_404(client: FlaskClient, tenant: Tenant) -> None:
    """A well-formed id that does not exist is a 404."""
    unknown = uuid.uuid4()
    response = client.get(f"/api/projects/{unknown}", headers=tenant.headers())
    assert_error(response, 404, f"Project {unknown} not found")


def test_get_non_uuid_project_is_404(client: FlaskClient, tenant: Tenant) -> None:
    """An id that is not a UUID cannot exist: 404, not 400 or 500."""
    response = client.get("/api/projects/not-a-uuid", headers=tenant.headers())
    # Not a UUID: no route (ids are UUIDs in the spec and the URL map alike).
    assert_error(response, 404, "Cannot GET /api/projects/not-a-uuid")


def test_create_with_unknown_field_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """Fields the schema does not know are refused, each named."""
    response = client.post(
        "/api/projects", headers=tenant.headers(), json={"name": "X", "colour": "red"}
    )
    assert_error(response, 400, ["colour: Unknown field."])


def test_patch_with_unknown_field_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """PATCH refuses unknown fields too, including snake_case spellings."""
    response = client.patch("/api/projects", headers=tenant.headers(), json={"execution_count": 4})
    assert_error(response, 400, ["execution_count: Unknown field."])


def test_create_without_name_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """``name`` is required on create."""
    response = client.post("/api/projects", headers=tenant.headers(), json={"industry": "x"})
    assert_error(response, 400, ["name: Missing data for required field."])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 42}, "name"),
        ({"name": "X", "nameAliases": "Acme"}, "nameAliases"),
        ({"name": "X", "competitors": [1]}, "competitors.0"),
        ({"name": "X", "executionCount": "3"}, "executionCount"),
        ({"name": "X", "executionCount": 2.5}, "executionCount"),
        ({"name": "X", "executionCount": True}, "executionCount"),
        ({"name": "X", "description": None}, "description"),
        ({"name": "X", "webSearch": "false"}, "webSearch"),
        ({"name": "X", "webSearch": 0}, "webSearch"),
    ],
)
def test_create_with_wrong_types_is_400(
    client: FlaskClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    """A field of the wrong type is a 400 naming that field."""
    response = client.post("/api/projects", headers=tenant.headers(), json=body)
    lines = validation_messages(response)
    assert len(lines) == 1 and lines[0].startswith(f"{field}: "), lines


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "X", "executionCount": 0}, "executionCount"),
        ({"name": "X", "executionCount": 101}, "executionCount"),
        ({"name": "X", "recurrence": "hourly"}, "recurrence"),
        ({"name": "X", "recurrence": "Daily"}, "recurrence"),
        ({"name": "X", "recurrenceStatus": "stopped"}, "recurrenceStatus"),
        ({"name": "X", "llmProviders": ["gpt-2"]}, "llmProviders.0"),
    ],
)
def test_create_out_of_range_is_400(
    client: FlaskClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    """Out-of-range values and unknown enum members are a 400 naming the field."""
    lines = validation_messages(client.post("/api/projects", headers=tenant.headers(), json=body))
    assert len(lines) == 1 and lines[0].startswith(f"{field}: "), lines


def test_bad_recurrence_message(client: FlaskClient, tenant: Tenant) -> None:
    """A bad recurrence lists the allowed values."""
    response = client.patch(
        "/api/projects", headers=tenant.headers(), json={"recurrence": "yearly"}
    )
    assert_error(
        response, 400, ["recurrence: Must be one of: manual, daily, weekly, biweekly, monthly."]
    )


def test_every_validation_error_is_reported(client: FlaskClient, tenant: Tenant) -> None:
    """Several bad fields give one line each."""
    response = client.post(
        "/api/projects",
        headers=tenant.headers(),
        json={"name": 1, "recurrence": "x", "executionCount": 0},
    )
    lines = validation_messages(response)
    assert sorted(line.split(":")[0] for line in lines) == ["executionCount", "name", "recurrence"]


def test_rejected_create_stores_nothing(client: FlaskClient, tenant: Tenant) -> None:
    """A refused create leaves the project list unchanged."""
    client.post("/api/projects", headers=tenant.headers(), json={"name": "Y", "recurrence": "x"})
    listed = client.get("/api/projects/list", headers=tenant.headers()).json
    assert [p["name"] for p in listed] == ["Acme"]
