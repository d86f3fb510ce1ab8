"""Error envelopes for routing, bodies and bad input; health, OpenAPI and docs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.api.helpers import PAGE_RANGE, SEED_BODY, assert_error, job_count
from tests.support import Tenant

MAX_BODY = 4 * 1024 * 1024


def test_unknown_path_is_nest_404(client: FlaskClient) -> None:
    """An unknown path under /api answers NestJS's wording, even without credentials."""
    response = client.get("/api/nope")
    assert response.status_code == 404
    assert response.json == {
        "statusCode": 404,
        "message": "Cannot GET /api/nope",
        "error": "Not Found",
    }


def test_unknown_path_names_the_method(client: FlaskClient, tenant: Tenant) -> None:
    """The 404 message names the method and the path as requested."""
    response = client.post("/api/jobs/trigger/now", headers=tenant.headers(), json={})
    assert_error(response, 404, "Cannot POST /api/jobs/trigger/now")


def test_unknown_path_outside_api_is_404_envelope(client: FlaskClient) -> None:
    """Paths outside /api answer the same envelope rather than an HTML page."""
    assert_error(client.get("/nowhere"), 404, "Cannot GET /nowhere")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/jobs/trigger"),
        ("PATCH", "/api/jobs/list"),
        ("PUT", "/api/projects"),
        ("POST", "/api/projects/list"),
        ("DELETE", "/api/queries/many"),
    ],
)
def test_wrong_method_is_405(client: FlaskClient, tenant: Tenant, method: str, path: str) -> None:
    """A known path with the wrong method is a 405 in the envelope."""
    response = client.open(path, method=method, headers=tenant.headers())
    assert_error(response, 405, f"Cannot {method} {path}")


def test_body_over_4_mb_is_413(client: FlaskClient, tenant: Tenant) -> None:
    """A body over the 4 MB limit is refused with 413 in the envelope, creating nothing."""
    before = job_count(tenant.org_id)
    body = json.dumps({**SEED_BODY, "padding": "x" * MAX_BODY})
    response = client.post(
        "/api/jobs/trigger", headers=tenant.headers(), data=body, content_type="application/json"
    )
    assert_error(response, 413, "Request body too large")
    assert job_count(tenant.org_id) == before


def test_body_just_under_4_mb_is_parsed(client: FlaskClient, tenant: Tenant) -> None:
    """A body under the limit is read (and here refused for its content, not its size)."""
    body = json.dumps({**SEED_BODY, "padding": "x" * (MAX_BODY - 1000)})
    assert len(body) < MAX_BODY
    response = client.post(
        "/api/jobs/trigger", headers=tenant.headers(), data=body, content_type="application/json"
    )
    assert_error(response, 400, ["padding: Unknown field."])


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ('{"aiModels": [', "Expecting value at line 1, column 15 (offset 14)"),
        (
            "{'a': 1}",
            "Expecting property name enclosed in double quotes at line 1, column 2 (offset 1)",
        ),
        ("nope", "Expecting value at line 1, column 1 (offset 0)"),
        (
            '{"a": 1,\n}',
            "Expecting property name enclosed in double quotes at line 2, column 1 (offset 9)",
        ),
    ],
)
def test_invalid_json_is_400_saying_where_it_broke(
    client: FlaskClient, tenant: Tenant, raw: str, where: str
) -> None:
    """A body that is not JSON is a 400 envelope that says what the parser found and
    where (line, column, offset), not a 500, an HTML page or a bare "Invalid JSON body."."""
    response = client.post(
        "/api/jobs/trigger", headers=tenant.headers(), data=raw, content_type="application/json"
    )
    assert_error(response, 400, [f"Invalid JSON body: {where}"])


def test_invalid_utf8_body_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """Bytes that are not UTF-8 are an invalid JSON body: the first bad byte is named."""
    response = client.post(
        "/api/projects",
        headers=tenant.headers(),
        data=b'{"name": "caf\xe9"}',
        content_type="application/json",
    )
    assert_error(response, 400, ["Invalid JSON body: not UTF-8: byte 0xe9 at offset 13"])


def test_json_array_body_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """A JSON body of the wrong shape is a 400."""
    response = client.post("/api/jobs/trigger", headers=tenant.headers(), json=[SEED_BODY])
    assert_error(response, 400, ["Invalid input type."])


@pytest.mark.parametrize(
    ("path", "body", "line"),
    [
        ("/api/queries", {"query": "a\x00b"}, "query: Must not contain NUL characters."),
        ("/api/projects", {"name": "nul\x00"}, "name: Must not contain NUL characters."),
        (
            "/api/projects",
            {"name": "x", "competitors": ["ok", "a\x00"]},
            "competitors.1: Must not contain NUL characters.",
        ),
        ("/api/queries/list", {"query": "\x00"}, "query: Must not contain NUL characters."),
    ],
)
def test_nul_characters_are_400_not_500(
    client: FlaskClient, tenant: Tenant, path: str, body: dict[str, Any], line: str
) -> None:
    """PostgreSQL cannot store NUL, so it is refused up front with a field line."""
    assert_error(client.post(path, headers=tenant.headers(), json=body), 400, [line])


@pytest.mark.parametrize(
    ("path", "raw", "line"),
    [
        ("/api/queries", '{"query": "a\\ud800b"}', "query: Not valid Unicode text."),
        ("/api/queries/list", '{"query": "\\udfff"}', "query: Not valid Unicode text."),
    ],
)
def test_lone_surrogates_are_400_not_500(
    client: FlaskClient, tenant: Tenant, path: str, raw: str, line: str
) -> None:
    """A JSON escape of half a surrogate pair cannot be stored, so it is a 400."""
    response = client.post(
        path, headers=tenant.headers(), data=raw, content_type="application/json"
    )
    assert_error(response, 400, [line])


@pytest.mark.parametrize("path", ["/api/queries/list", "/api/jobs/list"])
def test_page_beyond_any_offset_is_400_not_500(
    client: FlaskClient, tenant: Tenant, path: str
) -> None:
    """A page number whose offset would overflow the database is a validation error."""
    response = client.post(f"{path}?page=99999999999999999999", headers=tenant.headers(), json={})
    assert_error(response, 400, [PAGE_RANGE])


def test_healthz(client: FlaskClient) -> None:
    """/healthz reports the database and Redis as reachable."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_openapi_json_lists_the_family(client: FlaskClient) -> None:
    """The served spec documents the trigger with its body, response and security."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in (
        "/api/jobs/trigger",
        "/api/jobs/list",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/executions",
        "/api/projects",
        "/api/queries/list",
        "/api/v1/job-executions/{execution_id}",
    ):
        assert path in paths, path
    trigger = paths["/api/jobs/trigger"]["post"]
    assert "201" in trigger["responses"] and "422" in trigger["responses"]
    assert "x-project-id" in {p["name"] for p in trigger["parameters"]}
    schemes = spec["components"]["securitySchemes"]
    assert {"ApiKeyAuth", "BearerAuth"} <= set(schemes)
    body_schema = spec["components"]["schemas"]["TriggerJob"]
    assert set(body_schema["required"]) == {"aiModels", "executionCount"}
    assert "gemini-2.5-flash" in body_schema["properties"]["aiModels"]["items"]["enum"]


def test_docs_serve_html(client: FlaskClient) -> None:
    """/docs serves the Swagger UI page pointing at the spec."""
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "swagger" in page.lower() and "openapi.json" in page
