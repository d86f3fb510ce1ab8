"""``/v1/jobs/...`` is two families' path: Valpay's jobs (a bearer token) and the data
points the official super.AI client reads there (its ``API-KEY``). The credential decides
which family answers, in which envelope; without one, the 401 names both. A data point
is readable (and cancelable) the moment the create answers: no fan-out runs here.

The super.AI client itself drives these routes in ``tests/e2e/test_superai_client.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from api.valpay.envelope import UNAUTHORIZED
from shared.db import session_scope
from shared.engine.fanout import fan_out_job
from shared.models import Execution
from shared.settings import reset_settings_cache
from tests.support import Tenant, assert_counters_exact, job_row


def api_key(tenant: Tenant, header: str = "API-KEY") -> dict[str, str]:
    return {header: tenant.api_key}


def bearer(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.token}"}


def create(client: FlaskClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    """Create a batch as the super.AI client does; nothing fans it out afterwards."""
    response = client.post(f"/v1/apps/{tenant.project_id}/jobs", headers=api_key(tenant), json=body)
    assert response.status_code == 200, response.json
    answer: dict[str, Any] = response.json
    return answer


def superai_error(response: Any, status: int) -> str:
    """The message of a super.AI error envelope with this status."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert set(response.json) == {"statusCode", "message", "details"}, response.json
    assert response.json["statusCode"] == status
    message: str = response.json["message"]
    return message


def valpay_error(response: Any, status: int) -> str:
    """The message of a Valpay error envelope with this status."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["success"] is False, response.json
    message: str = response.json["message"]
    return message


# -- readable at once ------------------------------------------------------------------


def test_the_uuid_a_create_returns_is_readable_at_once(client: FlaskClient, tenant: Tenant) -> None:
    """20 creates of one input, each read back in the next request (16 of 20 were 404)."""
    for n in range(20):
        answer = create(client, tenant, {"inputs": [{"text": f"only {n}"}]})
        got = client.get(f"/v1/jobs/{answer['uuid']}", headers=api_key(tenant))
        assert got.status_code == 200, (n, got.json)
        assert got.json["input"] == {"text": f"only {n}"}
        assert got.json["status"] == "SCHEDULED" and got.json["batchId"] == answer["batchId"]
        response = client.get(f"/v1/jobs/{answer['uuid']}/response", headers=api_key(tenant))
        assert response.status_code == 200 and response.json["response"] is None


def test_every_data_point_of_a_batch_is_listed_and_cancelable_at_once(
    client: FlaskClient, tenant: Tenant
) -> None:
    answer = create(client, tenant, {"inputs": [{"n": i} for i in range(5)], "pending": True})
    listed = client.get(f"/v1/apps/{tenant.project_id}/jobs", headers=api_key(tenant)).json
    assert [p["input"] for p in listed["jobs"]] == [{"n": i} for i in range(5)]
    assert {p["status"] for p in listed["jobs"]} == {"PENDING"}
    first = listed["jobs"][0]["uuid"]
    canceled = client.post(f"/v1/jobs/{first}/cancel", headers=api_key(tenant))
    assert canceled.status_code == 200 and canceled.json["status"] == "CANCELED"
    batch = client.get(
        f"/v1/apps/{tenant.project_id}/batches/{answer['batchId']}", headers=api_key(tenant)
    ).json
    assert (batch["total"], batch["failedCount"], batch["pending"]) == (5, 1, 4)
    assert_counters_exact(answer["batchId"])
    # The fan-out message that follows writes nothing twice, and the cancel stays.
    assert fan_out_job(uuid.UUID(answer["batchId"])) == 0
    assert_counters_exact(answer["batchId"])


@pytest.fixture
def two_written_at_accept(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOBYARD_EXECUTIONS_WRITTEN_AT_ACCEPT", "2")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def test_a_create_writes_at_most_its_bound_and_the_fan_out_writes_the_rest(
    client: FlaskClient, tenant: Tenant, two_written_at_accept: None
) -> None:
    answer = create(client, tenant, {"inputs": [{"n": i} for i in range(5)]})
    batch_id = uuid.UUID(answer["batchId"])

    def written() -> list[int]:
        with session_scope() as session:
            rows = session.scalars(
                select(Execution.seq).where(Execution.job_id == batch_id).order_by(Execution.seq)
            )
            return list(rows)

    assert written() == [0, 1]
    assert job_row(batch_id).fanned_out_at is None  # the fan-out has the rest to write
    assert fan_out_job(batch_id) == 3
    assert written() == [0, 1, 2, 3, 4]
    assert_counters_exact(batch_id)


def test_a_batch_within_the_bound_is_fanned_out_by_its_create(
    client: FlaskClient, tenant: Tenant
) -> None:
    answer = create(client, tenant, {"inputs": [{"n": i} for i in range(3)]})
    job = job_row(answer["batchId"])
    assert job.fanned_out_at is not None and job.total == 3
    with session_scope() as session:
        count = session.scalar(
            select(func.count()).where(Execution.job_id == uuid.UUID(answer["batchId"]))
        )
    assert count == 3


# -- the credential decides ------------------------------------------------------------


@pytest.mark.parametrize("header", ["API-KEY", "x-api-key"])
def test_an_api_key_names_super_ai(client: FlaskClient, tenant: Tenant, header: str) -> None:
    answer = create(client, tenant, {"inputs": [{"text": "a"}]})
    point = client.get(f"/v1/jobs/{answer['uuid']}", headers=api_key(tenant, header))
    assert point.status_code == 200 and point.json["uuid"] == answer["uuid"]
    # A batch is not a data point: super.AI's 404, in its envelope.
    missing = client.get(f"/v1/jobs/{answer['batchId']}", headers=api_key(tenant, header))
    assert answer["batchId"] in superai_error(missing, 404)
    # Valpay's list stays Valpay's, which takes no API key.
    listed = client.get("/v1/jobs?limit=1", headers=api_key(tenant, header))
    assert listed.status_code == 401 and listed.json == UNAUTHORIZED


def test_a_bearer_token_names_valpay(client: FlaskClient, tenant: Tenant) -> None:
    answer = create(client, tenant, {"inputs": [{"text": "a"}]})
    job = client.get(f"/v1/jobs/{answer['batchId']}", headers=bearer(tenant))
    assert job.status_code == 200 and job.json["data"]["jobId"] == answer["batchId"]
    # A data point is not a Valpay job, and super.AI's routes are not Valpay's.
    missing = client.get(f"/v1/jobs/{answer['uuid']}", headers=bearer(tenant))
    assert answer["uuid"] in valpay_error(missing, 404)
    for method, path in [
        ("get", f"/v1/jobs/{answer['uuid']}/response"),
        ("post", f"/v1/jobs/{answer['uuid']}/cancel"),
        ("patch", f"/v1/jobs/{answer['uuid']}/review"),
    ]:
        response = getattr(client, method)(path, headers=bearer(tenant), json={"correct": True})
        assert valpay_error(response, 404) == f"Cannot {method.upper()} {path}"
    still = client.get(f"/v1/jobs/{answer['uuid']}", headers=api_key(tenant)).json
    assert still["status"] == "SCHEDULED"  # the cancel above reached nothing


def test_with_both_the_bearer_token_names_the_paths_owner(
    client: FlaskClient, tenant: Tenant
) -> None:
    """Whatever else comes with it, a bearer token is Valpay's there: its clients see
    what they saw before super.AI's routes were added."""
    answer = create(client, tenant, {"inputs": [{"text": "a"}]})
    both = {**api_key(tenant), **bearer(tenant)}
    job = client.get(f"/v1/jobs/{answer['batchId']}", headers=both)
    assert job.status_code == 200 and job.json["data"]["jobId"] == answer["batchId"]
    valpay_error(client.get(f"/v1/jobs/{answer['uuid']}", headers=both), 404)


@pytest.mark.parametrize(
    ("method", "rest"),
    [("get", ""), ("get", "/response"), ("post", "/cancel"), ("patch", "/review")],
)
def test_without_a_credential_the_401_names_both_ways(
    client: FlaskClient, method: str, rest: str
) -> None:
    path = f"/v1/jobs/{uuid.uuid4()}{rest}"
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"API-KEY": ""}):
        response = getattr(client, method)(path, headers=headers)
        assert superai_error(response, 401) == (
            "Missing credentials: send API-KEY or x-api-key (super.AI) or "
            "Authorization: Bearer <token> (Valpay)"
        )


def test_a_wrong_key_is_super_ais_401_and_a_wrong_token_valpays(client: FlaskClient) -> None:
    path = f"/v1/jobs/{uuid.uuid4()}"
    assert superai_error(client.get(path, headers={"API-KEY": "nope"}), 401) == "Invalid API key"
    response = client.get(path, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401 and response.json == UNAUTHORIZED


def test_another_tenants_data_point_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    answer = create(client, tenant, {"inputs": [{"text": "a"}]})
    for rest, method in [("", "get"), ("/response", "get"), ("/cancel", "post")]:
        response = getattr(client, method)(
            f"/v1/jobs/{answer['uuid']}{rest}", headers=api_key(other_tenant)
        )
        superai_error(response, 404)
    mine = client.get(f"/v1/jobs/{answer['uuid']}", headers=api_key(tenant)).json
    assert mine["status"] == "SCHEDULED"


def test_the_docs_of_both_families_stay_open(client: FlaskClient) -> None:
    for path in ("/v1/jobs/openapi.json", "/v1/apps/openapi.json"):
        spec = client.get(path)
        assert spec.status_code == 200, path
    valpay = client.get("/v1/jobs/openapi.json").json
    superai = client.get("/v1/apps/openapi.json").json
    assert "API-KEY" in valpay["info"]["description"]
    assert "Bearer" in superai["info"]["description"]
    assert set(superai["paths"]["/v1/jobs/{job_id}"]) == {"get", "parameters"}
    assert superai["paths"]["/v1/jobs/{job_id}"]["get"]["security"] == [
        {"ApiKeyHeader": []},
        {"XApiKey": []},
    ]


# -- the client's other fields, the list's filters, review ---------------------------


def test_super_ais_401_names_its_own_header(client: FlaskClient, tenant: Tenant) -> None:
    response = client.get(f"/v1/apps/{tenant.project_id}/batches")
    assert superai_error(response, 401) == (
        "Missing credentials: send API-KEY or x-api-key or Authorization: Bearer <token>"
    )


@pytest.mark.parametrize("metadata", [{"id": "mine-1"}, [{"id": "mine-1"}, {"k": "v"}], []])
def test_metadata_is_an_object_or_an_array(
    client: FlaskClient, tenant: Tenant, metadata: Any
) -> None:
    answer = create(client, tenant, {"inputs": [{"text": "a"}], "metadata": metadata})
    point = client.get(f"/v1/jobs/{answer['uuid']}", headers=api_key(tenant)).json
    assert point["metadata"] == metadata
    batch = client.get(
        f"/v1/apps/{tenant.project_id}/batches/{answer['batchId']}", headers=api_key(tenant)
    ).json
    assert batch["metadata"] == metadata


def test_a_labeler_is_refused_by_name(client: FlaskClient, tenant: Tenant) -> None:
    response = client.post(
        f"/v1/apps/{tenant.project_id}/jobs",
        headers=api_key(tenant),
        json={"inputs": [{"text": "a"}], "labeler": "crowd"},
    )
    superai_error(response, 400)
    (detail,) = response.json["details"]
    assert detail.startswith("labeler: not supported: ") and "processor" in detail


def test_the_completed_dates_filter_finished_data_points(
    client: FlaskClient, tenant: Tenant
) -> None:
    create(client, tenant, {"inputs": [{"n": i} for i in range(3)]})
    path = f"/v1/apps/{tenant.project_id}/jobs"
    points = client.get(path, headers=api_key(tenant)).json["jobs"]
    client.post(f"/v1/jobs/{points[1]['uuid']}/cancel", headers=api_key(tenant))

    def listed(**query: str) -> list[Any]:
        response = client.get(path, headers=api_key(tenant), query_string=query)
        assert response.status_code == 200, response.json
        return [p["input"] for p in response.json["jobs"]]

    assert listed(completedStartDate="2000-01-01T00:00:00Z") == [{"n": 1}]
    assert listed(completedEndDate="2999-01-01T00:00:00Z") == [{"n": 1}]
    assert listed(completedStartDate="2030-01-01T00:00:00Z") == []
    assert listed(completedEndDate="2000-01-01T00:00:00Z") == []
    assert len(listed()) == 3
    bad = client.get(path, headers=api_key(tenant), query_string={"completedStartDate": "soon"})
    assert any(d.startswith("completedStartDate") for d in bad.json["details"]), bad.json


def test_only_a_finished_data_point_is_reviewed(client: FlaskClient, tenant: Tenant) -> None:
    answer = create(client, tenant, {"inputs": [{"text": "a"}]})
    review = f"/v1/jobs/{answer['uuid']}/review"
    assert "SCHEDULED" in superai_error(
        client.patch(review, headers=api_key(tenant), json={"correct": True}), 409
    )
    for body in ({}, {"correct": "yes"}, {"correct": True, "worker": "me"}):
        superai_error(client.patch(review, headers=api_key(tenant), json=body), 400)
    client.post(f"/v1/jobs/{answer['uuid']}/cancel", headers=api_key(tenant))
    assert "CANCELED" in superai_error(
        client.patch(review, headers=api_key(tenant), json={"correct": True}), 409
    )
