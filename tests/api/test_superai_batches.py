"""The super.AI-compatible batches API: accepting batches, bad input, data points (park,
queue, cancel, list), batches and the app's processor. The fan-out runs in the test's
process here; end to end with workers: ``tests/e2e/test_batches.py``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.db import session_scope
from shared.engine.fanout import fan_out_job
from shared.models import Execution, Job
from tests.support import Tenant, assert_counters_exact


def path(tenant: Tenant, rest: str = "") -> str:
    return f"/v1/apps/{tenant.project_id}{rest}"


def auth(tenant: Tenant) -> dict[str, str]:
    return {"API-KEY": tenant.api_key}


def submit(client: FlaskClient, tenant: Tenant, body: dict[str, Any]) -> Any:
    return client.post(path(tenant, "/jobs"), headers=auth(tenant), json=body)


def accepted(client: FlaskClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = submit(client, tenant, body)
    assert response.status_code == 200, response.json
    answer: dict[str, Any] = response.json
    fan_out_job(uuid.UUID(answer["batchId"]))
    return answer


def data_points(client: FlaskClient, tenant: Tenant, **query: Any) -> list[dict[str, Any]]:
    response = client.get(path(tenant, "/jobs"), headers=auth(tenant), query_string=query)
    assert response.status_code == 200, response.json
    jobs: list[dict[str, Any]] = response.json["jobs"]
    return jobs


def batch_rows(tenant: Tenant) -> int:
    with session_scope() as session:
        return session.query(Job).filter(Job.organisation_id == tenant.org_id).count()


# -- accepting --------------------------------------------------------------------------


def test_a_batch_is_accepted_with_its_id_and_a_single_inputs_uuid(
    client: FlaskClient, tenant: Tenant
) -> None:
    three = accepted(
        client,
        tenant,
        {
            "inputs": [{"text": "a"}, {"text": "b"}, {"text": "c"}],
            "callbackUrl": "https://hooks.example.com/superai",
            "metadata": {"id": "mine-1"},
            "tags": ["t1"],
        },
    )
    assert three["message"] and "uuid" not in three
    batch = client.get(path(tenant, f"/batches/{three['batchId']}"), headers=auth(tenant)).json
    assert batch["batchId"] == three["batchId"] and batch["appId"] == str(tenant.project_id)
    assert (batch["total"], batch["state"]) == (3, "IN_PROGRESS")
    assert batch["metadata"] == {"id": "mine-1"} and batch["tags"] == ["t1"]
    points = data_points(client, tenant)
    assert [p["input"] for p in points] == [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    assert {p["status"] for p in points} == {"SCHEDULED"}
    assert all(p["batchId"] == three["batchId"] for p in points)
    assert points[0]["callbackUrl"] == "https://hooks.example.com/superai"

    one = accepted(client, tenant, {"inputs": [{"text": "only"}]})
    got = client.get(path(tenant, f"/jobs/{one['uuid']}"), headers=auth(tenant))
    assert got.status_code == 200 and got.json["input"] == {"text": "only"}
    response = client.get(path(tenant, f"/jobs/{one['uuid']}/response"), headers=auth(tenant))
    assert response.json["status"] == "SCHEDULED" and response.json["response"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "inputs"),
        ({"inputs": [{"a": 1}], "inputsFileUrl": "https://files.example.com/in.json"}, "inputs"),
        ({"inputs": []}, "inputs"),
        ({"inputs": {"a": 1}}, "inputs"),
        ({"inputs": [{"a": 1}, "two"]}, "inputs"),
        ({"inputs": [{"a": 1}], "pending": "yes"}, "pending"),
        ({"inputs": [{"a": 1}], "tags": "t"}, "tags"),
        ({"inputs": [{"a": 1}], "metadata": "mine-1"}, "metadata"),
        ({"inputs": [{"a": 1}], "metadata": 1}, "metadata"),
        ({"inputs": [{"a": 1}], "labeler": "crowd"}, "labeler"),
    ],
)
def test_bad_input_is_400_in_the_envelope_and_creates_nothing(
    client: FlaskClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    response = submit(client, tenant, body)
    assert response.status_code == 400, response.json
    assert response.json["statusCode"] == 400 and response.json["message"]
    assert any(d.startswith(f"{field}") for d in response.json["details"]), response.json
    assert batch_rows(tenant) == 0


@pytest.mark.parametrize(
    "url", ["ftp://files.example.com/in.json", "not a url", "https://user:pw@files.example.com/x"]
)
def test_a_file_url_that_cannot_be_fetched_is_refused_at_once(
    client: FlaskClient, tenant: Tenant, url: str
) -> None:
    response = submit(client, tenant, {"inputsFileUrl": url})
    assert response.status_code == 400 and response.json["statusCode"] == 400
    assert batch_rows(tenant) == 0


def test_a_body_over_4_mb_is_413_in_the_envelope(client: FlaskClient, tenant: Tenant) -> None:
    big = {"inputs": [{"text": "x" * 1000} for _ in range(4200)]}
    response = client.post(
        path(tenant, "/jobs"),
        headers={**auth(tenant), "Content-Type": "application/json"},
        data=json.dumps(big),
    )
    assert response.status_code == 413
    assert response.json["statusCode"] == 413 and response.json["message"]
    assert batch_rows(tenant) == 0


def test_credentials(client: FlaskClient, tenant: Tenant, other_tenant: Tenant) -> None:
    for headers in (
        {"API-KEY": tenant.api_key},
        {"x-api-key": tenant.api_key},
        {"Authorization": f"Bearer {tenant.token}"},
    ):
        assert client.get(path(tenant, "/batches"), headers=headers).status_code == 200
    response = client.get(path(tenant, "/batches"))
    assert response.status_code == 401 and response.json["statusCode"] == 401
    # Another tenant's app is not found, whatever is asked of it.
    response = submit(client, other_tenant, {"inputs": [{"a": 1}]})
    assert response.status_code == 200
    theirs = path(tenant).replace(str(tenant.project_id), str(other_tenant.project_id))
    for method, rest in [
        ("post", "/jobs"),
        ("get", "/jobs"),
        ("get", "/batches"),
        ("get", f"/batches/{response.json['batchId']}"),
        ("get", "/processor"),
    ]:
        answer = getattr(client, method)(theirs + rest, headers=auth(tenant), json={"inputs": [{}]})
        assert answer.status_code == 404, (method, rest, answer.json)


# -- data points ----------------------------------------------------------------------


def test_park_queue_and_cancel(client: FlaskClient, tenant: Tenant) -> None:
    answer = accepted(client, tenant, {"inputs": [{"n": i} for i in range(4)], "pending": True})
    points = data_points(client, tenant, sortBy="created")
    assert [p["status"] for p in points] == ["PENDING"] * 4
    first, second, third, _ = (p["id"] for p in points)

    queued = client.post(path(tenant, f"/jobs/{first}/queue"), headers=auth(tenant))
    assert queued.status_code == 200 and queued.json["status"] == "SCHEDULED"
    again = client.post(path(tenant, f"/jobs/{first}/queue"), headers=auth(tenant))
    assert again.status_code == 409 and again.json["statusCode"] == 409
    with session_scope() as session:  # dispatch handed the queued one out, not the parked
        dispatched = {
            str(e.id)
            for e in session.query(Execution).filter(
                Execution.job_id == uuid.UUID(answer["batchId"]),
                Execution.dispatched_at.is_not(None),
            )
        }
    assert dispatched == {first}

    canceled = client.post(path(tenant, f"/jobs/{second}/cancel"), headers=auth(tenant))
    assert canceled.status_code == 200 and canceled.json["status"] == "CANCELED"
    twice = client.post(path(tenant, f"/jobs/{second}/cancel"), headers=auth(tenant))
    assert twice.status_code == 409
    parked_then_canceled = client.post(path(tenant, f"/jobs/{third}/cancel"), headers=auth(tenant))
    assert parked_then_canceled.json["status"] == "CANCELED"
    not_parked = client.post(path(tenant, f"/jobs/{third}/queue"), headers=auth(tenant))
    assert not_parked.status_code == 409

    batch = client.get(path(tenant, f"/batches/{answer['batchId']}"), headers=auth(tenant)).json
    assert (batch["total"], batch["pending"], batch["failedCount"]) == (4, 2, 2)
    assert_counters_exact(answer["batchId"])
    states = {p["id"]: p["status"] for p in data_points(client, tenant)}
    assert sorted(states.values()) == ["CANCELED", "CANCELED", "PENDING", "SCHEDULED"]
    assert data_points(client, tenant, statusIn=["CANCELED"]) and {
        p["id"] for p in data_points(client, tenant, statusIn=["CANCELED"])
    } == {second, third}
    pending_or_scheduled = data_points(client, tenant, statusIn=["PENDING", "SCHEDULED"])
    assert {p["status"] for p in pending_or_scheduled} == {"PENDING", "SCHEDULED"}


def test_listing_pages_sorts_and_dates(client: FlaskClient, tenant: Tenant) -> None:
    accepted(client, tenant, {"inputs": [{"n": i} for i in range(7)]})
    first = client.get(path(tenant, "/jobs"), headers=auth(tenant), query_string={"size": 3})
    assert (first.json["page"], first.json["size"], first.json["pages"], first.json["total"]) == (
        0,
        3,
        3,
        7,
    )
    pages = [
        data_points(client, tenant, size=3, page=p, sortBy="created", orderBy="asc")
        for p in range(3)
    ]
    seen = [p["input"]["n"] for page in pages for p in page]
    assert seen == list(range(7))
    newest_first = data_points(client, tenant, sortBy="created", orderBy="desc")
    assert [p["input"]["n"] for p in newest_first] == list(range(6, -1, -1))
    assert data_points(client, tenant, createdStartDate="2999-01-01T00:00:00Z") == []
    assert len(data_points(client, tenant, createdEndDate="2999-01-01T00:00:00Z")) == 7
    bad = client.get(path(tenant, "/jobs"), headers=auth(tenant), query_string={"statusIn": "DONE"})
    assert bad.status_code == 400 and bad.json["statusCode"] == 400
    batches = client.get(path(tenant, "/batches"), headers=auth(tenant)).json
    assert batches["total"] == 1 and batches["batches"][0]["total"] == 7


def test_the_apps_processor(client: FlaskClient, tenant: Tenant) -> None:
    default = client.get(path(tenant, "/processor"), headers=auth(tenant))
    assert default.status_code == 200 and default.json["promptTemplate"]
    body = {"promptTemplate": "Classify: {{ text }}", "model": "sonar", "webSearch": False}
    response = client.put(path(tenant, "/processor"), headers=auth(tenant), json=body)
    assert response.status_code == 200 and response.json == body
    assert client.get(path(tenant, "/processor"), headers=auth(tenant)).json == body
    for bad in (
        {**body, "promptTemplate": "{{ text "},
        {**body, "model": "gpt-2"},
        {"model": "sonar"},
    ):
        answer = client.put(path(tenant, "/processor"), headers=auth(tenant), json=bad)
        assert answer.status_code == 400, answer.json
    assert client.get(path(tenant, "/processor"), headers=auth(tenant)).json == body
    # A batch keeps the processor it was accepted with.
    answer = accepted(client, tenant, {"inputs": [{"text": "x"}]})
    client.put(
        path(tenant, "/processor"), headers=auth(tenant), json={**body, "model": "gpt-4.1-mini"}
    )
    with session_scope() as session:
        batch = session.get(Job, uuid.UUID(answer["batchId"]))
        assert batch is not None and batch.payload["processor"]["model"] == "sonar"
