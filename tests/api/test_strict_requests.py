"""Strict where a client could silently go wrong, in every family and operation: a query
parameter the operation does not take, a body that is not typed as JSON, a count that is
not whole; and errors that say what went wrong: where a JSON body broke, and a 404 (not an
HTML redirect) for a path Werkzeug would rewrite (api/operations.py, api/errors.py)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api.families import Family, discover
from tests.api.helpers import job_count
from tests.support import Tenant

FAMILIES = {family.name: family for family in discover()}


def spec_of(client: FlaskClient, family: Family) -> dict[str, Any]:
    spec: dict[str, Any] = client.get(family.docs_prefix.rstrip("/") + "/openapi.json").json
    return spec


def every_operation(app: Flask) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(family, METHOD, path, operation) of every operation of every spec."""
    client = app.test_client()
    return [
        (name, method.upper(), path, operation)
        for name, family in sorted(FAMILIES.items())
        for path, item in spec_of(client, family)["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    ]


def credentials(family: Family, tenant: Tenant) -> dict[str, str]:
    if family.name == "valpay":
        return {"Authorization": f"Bearer {tenant.token}"}
    if family.name == "superai":
        return {"API-KEY": tenant.api_key}
    return tenant.headers()


def filled(path: str, tenant: Tenant) -> str:
    """The path with its parameters filled: the tenant's app, else a fresh id or name."""
    path = path.replace("{app_id}", str(tenant.project_id))
    return re.sub(r"\{[^}]+\}", lambda m: str(uuid.uuid4()), path)


def assert_envelope(family: Family, response: TestResponse, status: int) -> dict[str, Any]:
    """The answer is ``status`` in the family's own error envelope (its keys)."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body: dict[str, Any] = response.json
    expected = family.envelope(status, "m", ["d"], None)
    assert set(body) == set(expected), body
    return body


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``operation``: every operation of every family's spec, by its name;
    ``operation_with_body``: those that take a JSON body."""
    for argument in ("operation", "operation_with_body"):
        if argument in metafunc.fixturenames:
            from api import create_app

            found = every_operation(create_app({"TESTING": True}))
            if argument == "operation_with_body":
                found = [o for o in found if "requestBody" in o[3]]
            metafunc.parametrize(
                argument, found, ids=[f"{name} {method} {path}" for name, method, path, _ in found]
            )


# ------------------------------------------------------------ unknown query parameters


def test_an_unknown_query_parameter_is_400_naming_it_on_every_operation(
    client: FlaskClient, tenant: Tenant, operation: tuple[str, str, str, dict[str, Any]]
) -> None:
    """Whatever the operation (a list, a read, a create, one with no query parameter at
    all), a parameter it does not declare is refused by name, with what it takes."""
    name, method, path, spec = operation
    family = FAMILIES[name]
    before = job_count(tenant.org_id)
    response = client.open(
        filled(path, tenant),
        method=method,
        headers=credentials(family, tenant),
        query_string={"stauts": "failed", "foo": "1"},
        json={} if "requestBody" in spec else None,
    )
    body = assert_envelope(family, response, 400)
    text = str(body)
    assert "stauts" in text and "foo" in text and "Unknown query parameter" in text, body
    declared = sorted(p["name"] for p in spec.get("parameters", []) if p.get("in") == "query")
    assert f"this operation takes: {', '.join(declared) or 'none'}" in text, body
    assert job_count(tenant.org_id) == before


@pytest.mark.parametrize(
    ("family", "path", "query"),
    [
        (
            "valpay",
            "/v1/jobs",
            {"limit": 5, "cursor": "eyJ0IjogMX0="},
        ),  # Valpay's is lastEvaluatedKey
        ("superai", "/v1/apps/{app}/jobs", {"foo": "1"}),
        ("superai", "/v1/apps/{app}/batches", {"limit": "5"}),  # super.AI pages with page/size
    ],
)
def test_a_misspelled_list_parameter_no_longer_answers_the_first_page(
    client: FlaskClient, tenant: Tenant, family: str, path: str, query: dict[str, Any]
) -> None:
    response = client.get(
        path.format(app=tenant.project_id),
        headers=credentials(FAMILIES[family], tenant),
        query_string=query,
    )
    body = assert_envelope(FAMILIES[family], response, 400)
    unknown = next(k for k in query if k != "limit" or family != "valpay")
    assert f"query.{unknown}: Unknown query parameter" in str(body), body


@pytest.mark.parametrize(
    ("family", "path", "query"),
    [
        ("valpay", "/v1/jobs", {"limit": 5, "sortOrder": "asc"}),
        ("superai", "/v1/apps/{app}/jobs", {"page": 0, "size": 5, "statusIn": "COMPLETED"}),
        ("mentionlab", "/api/jobs/list", {"limit": 5, "page": 1}),
        ("smartdb", "/jobs", {}),
    ],
)
def test_declared_query_parameters_are_still_taken(
    client: FlaskClient, tenant: Tenant, family: str, path: str, query: dict[str, Any]
) -> None:
    method = "POST" if path.endswith("/list") else "GET"
    response = client.open(
        path.format(app=tenant.project_id),
        method=method,
        headers=credentials(FAMILIES[family], tenant),
        query_string=query,
        json={} if method == "POST" else None,
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def test_mentionlab_lists_document_their_paging(client: FlaskClient) -> None:
    """The context headers no longer replace the query parameters in the spec (which made
    limit and page unknown to it, and to a client generated from it)."""
    spec = spec_of(client, FAMILIES["mentionlab"])
    for path, method in (
        ("/api/jobs/list", "post"),
        ("/api/queries/list", "post"),
        ("/api/cached-jobs/list", "post"),
        ("/api/jobs/{job_id}/executions", "get"),
    ):
        parameters = spec["paths"][path][method]["parameters"]
        assert {"limit", "page"} <= {p["name"] for p in parameters if p["in"] == "query"}, path


# ------------------------------------------------------------------- a body's type


def test_a_body_without_a_json_content_type_is_415_on_every_operation_taking_one(
    client: FlaskClient, tenant: Tenant, operation_with_body: tuple[str, str, str, dict[str, Any]]
) -> None:
    name, method, path, _ = operation_with_body
    family = FAMILIES[name]
    before = job_count(tenant.org_id)
    for content_type in (None, "application/x-www-form-urlencoded", "text/plain"):
        headers = credentials(family, tenant)
        if content_type:
            headers["Content-Type"] = content_type
        response = client.open(
            filled(path, tenant), method=method, headers=headers, data=b'{"aiModels": ["sonar"]}'
        )
        body = assert_envelope(family, response, 415)
        text = str(body)
        assert "Content-Type must be application/json" in text, body
        assert (repr(content_type) if content_type else "it had none") in text, body
    assert job_count(tenant.org_id) == before


def test_an_absent_body_is_still_taken_where_the_body_is_optional(
    client: FlaskClient, tenant: Tenant
) -> None:
    response = client.post("/api/jobs/list", headers=tenant.headers())
    assert response.status_code == 200, response.json


# ---------------------------------------------------------------- whole numbers


def whole_number_requests(tenant: Tenant, count: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """Every field that a seed types as a number and that is a count: (family, path, body)."""
    return [
        ("mentionlab", "/api/jobs/trigger", {"aiModels": ["sonar"], "executionCount": count}),
        ("mentionlab", "/api/projects", {"name": "Counted", "executionCount": count}),
        (
            "mentionlab",
            "/api/cached-jobs/many",
            {
                "cachedJobs": [
                    {
                        "queryId": str(tenant.query_ids[0]),
                        "aiModels": ["openai"],
                        "executionCount": count,
                    }
                ]
            },
        ),
        (
            "valpay",
            "/v1/jobs",
            {
                "jobType": "ai_queries",
                "payload": {
                    "projectId": str(tenant.project_id),
                    "aiModels": ["sonar"],
                    "executionCount": count,
                },
            },
        ),
    ]


def test_a_whole_number_may_be_written_3_0(client: FlaskClient, tenant: Tenant) -> None:
    for family, path, body in whole_number_requests(tenant, 3.0):
        response = client.post(path, headers=credentials(FAMILIES[family], tenant), json=body)
        assert response.status_code in (200, 201), (path, response.json)
        answer = response.json
        answer = answer.get("data", answer) if isinstance(answer, dict) else answer[0]
        counted = answer.get("executionCount") or answer.get("payload", {}).get("executionCount")
        assert counted == 3 and isinstance(counted, int), (path, answer)


@pytest.mark.parametrize("count", [3.5, 0.1, "3", True])
def test_a_count_that_is_not_a_whole_number_is_400(
    client: FlaskClient, tenant: Tenant, count: Any
) -> None:
    before = job_count(tenant.org_id)
    for family, path, body in whole_number_requests(tenant, count):
        response = client.post(path, headers=credentials(FAMILIES[family], tenant), json=body)
        answer = assert_envelope(FAMILIES[family], response, 400)
        expected = "Must be a whole number." if isinstance(count, float) else "Not a valid integer."
        assert expected in str(answer), (path, answer)
    assert job_count(tenant.org_id) == before


def test_smartdb_search_limit_is_whole(client: FlaskClient, tenant: Tenant) -> None:
    created = client.post("/knowledge_bases", headers=tenant.headers(), json={"name": "whole_kb"})
    assert created.status_code == 201, created.json
    path = "/knowledge_bases/whole_kb/search"
    ok = client.post(path, headers=tenant.headers(), json={"query": "q", "limit": 2.0})
    assert ok.status_code == 200, ok.json
    refused = client.post(path, headers=tenant.headers(), json={"query": "q", "limit": 2.5})
    body = assert_envelope(FAMILIES["smartdb"], refused, 400)
    assert "limit: Must be a whole number." in str(body), body


# ---------------------------------------------------------------------- clear errors


@pytest.mark.parametrize(
    ("family", "method", "path"),
    [
        ("mentionlab", "POST", "/api//jobs/list"),
        ("mentionlab", "GET", "/api/projects//list"),
        ("valpay", "GET", "/v1//jobs"),
        ("valpay", "GET", "/v1/jobs//"),
        ("superai", "GET", "/v1/apps//{app}/jobs"),
        ("superai", "GET", "/v1/apps/{app}//batches"),
        ("smartdb", "GET", "/databases//"),
        ("smartdb", "POST", "/knowledge_bases//kb/search"),
        ("smartdb", "POST", "/jobs//create"),
    ],
)
def test_a_path_werkzeug_would_redirect_is_404_in_the_familys_envelope(
    client: FlaskClient, tenant: Tenant, family: str, method: str, path: str
) -> None:
    """Not an HTML 308 to the merged path: a 404 like any path no route has."""
    url = path.format(app=tenant.project_id)
    response = client.open(url, method=method, headers=credentials(FAMILIES[family], tenant))
    body = assert_envelope(FAMILIES[family], response, 404)
    assert "Location" not in response.headers
    assert f"Cannot {method} {url}" in str(body), body


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_bad_json_says_where_it_broke_in_every_family(
    client: FlaskClient, tenant: Tenant, name: str
) -> None:
    path = {
        "mentionlab": "/api/projects",
        "superai": f"/v1/apps/{tenant.project_id}/jobs",
        "valpay": "/v1/jobs",
        "smartdb": "/knowledge_bases",
    }[name]
    response = client.post(
        path,
        headers=credentials(FAMILIES[name], tenant),
        data='{"name": "x",\n "oops" }',
        content_type="application/json",
    )
    body = assert_envelope(FAMILIES[name], response, 400)
    assert "Invalid JSON body: Expecting ':' delimiter at line 2, column 9 (offset 22)" in str(
        body
    ), body


# ------------------------------------------------------------------ header ids


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_header_ids_are_strings_with_a_uuid_pattern(client: FlaskClient, name: str) -> None:
    """A generated client passes a ``format: uuid`` header as a UUID object, which httpx
    refuses (TypeError): headers are plain strings, their UUID-ness a pattern."""
    for path, item in spec_of(client, FAMILIES[name])["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []) if method != "parameters" else []:
                if parameter["in"] == "header":
                    assert "format" not in parameter["schema"], (method, path, parameter)
                    if parameter["name"] in ("x-organisation-id", "x-project-id"):
                        assert parameter["schema"]["pattern"].startswith("^[0-9A-Fa-f]{8}-")


@pytest.mark.parametrize(
    "value", ["{" + "0" * 8 + "-0000-0000-0000-" + "0" * 12 + "}", "0" * 32, "urn:uuid:x"]
)
def test_a_context_header_outside_its_pattern_is_400(
    client: FlaskClient, tenant: Tenant, value: str
) -> None:
    """What the server takes is what the spec's pattern says (uuid.UUID would take braces,
    no hyphens or a urn)."""
    response = client.post(
        "/api/jobs/list", headers={**tenant.headers(), "x-project-id": value}, json={}
    )
    body = assert_envelope(FAMILIES["mentionlab"], response, 400)
    assert body["message"] == ["x-project-id: must be a UUID"], body
