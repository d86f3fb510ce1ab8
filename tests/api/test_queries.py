"""Queries: create one or many, list with paging, filters and sorting, get one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete

from shared.db import session_scope
from shared.mentionlab.models import Query
from tests.api.helpers import PAGE_RANGE, assert_error, assert_recent_timestamp, validation_messages
from tests.support import Tenant

ITEMS: list[dict[str, Any]] = [
    {"query": "best crm for startups", "language": "en", "country": "US"},
    {"query": "meilleur CRM pour PME", "language": "fr", "country": "FR"},
    {"query": "die besten crm", "language": "de", "country": "DE"},
    {"query": "crm with 100% uptime", "language": "en", "country": "GB"},
    {"query": "what is a crm_tool", "language": "en-US", "country": "US"},
]


def add_many(client: FlaskClient, tenant: Tenant, items: list[dict[str, Any]]) -> list[Any]:
    response = client.post("/api/queries/many", headers=tenant.headers(), json={"queries": items})
    assert response.status_code == 201, response.json
    created: list[Any] = response.json
    return created


def list_queries(
    client: FlaskClient, tenant: Tenant, body: dict[str, Any] | None = None, qs: str = ""
) -> dict[str, Any]:
    response = client.post(f"/api/queries/list{qs}", headers=tenant.headers(), json=body or {})
    assert response.status_code == 200, response.json
    page: dict[str, Any] = response.json
    return page


@pytest.fixture
def catalogue(client: FlaskClient, tenant: Tenant) -> list[dict[str, Any]]:
    """The tenant's project with ITEMS as its only queries, created one request at a time."""
    with session_scope() as session:
        session.execute(delete(Query).where(Query.project_id == tenant.project_id))
    created = []
    for item in ITEMS:
        response = client.post("/api/queries", headers=tenant.headers(), json=item)
        assert response.status_code == 201, response.json
        created.append(response.json)
    return created


def texts(page: dict[str, Any]) -> list[str]:
    return [q["query"] for q in page["results"]]


def test_create_one(client: FlaskClient, tenant: Tenant) -> None:
    """POST /api/queries returns the query in camelCase with its project and defaults."""
    tag = str(uuid.uuid4())
    response = client.post(
        "/api/queries",
        headers=tenant.headers(),
        json={"query": "who sells anvils", "tagIds": [tag]},
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == {
        "id",
        "project",
        "query",
        "language",
        "country",
        "tagIds",
        "createdAt",
        "updatedAt",
    }
    uuid.UUID(body["id"])
    assert body["project"] == str(tenant.project_id)
    assert (body["query"], body["language"], body["country"]) == ("who sells anvils", "en", "US")
    assert body["tagIds"] == [tag]
    assert_recent_timestamp(body["createdAt"])
    got = client.get(f"/api/queries/{body['id']}", headers=tenant.headers())
    assert got.status_code == 200 and got.json == body


def test_create_many(client: FlaskClient, tenant: Tenant) -> None:
    """POST /api/queries/many creates every item, in order, in the project."""
    created = add_many(client, tenant, ITEMS)
    assert [(q["query"], q["language"], q["country"]) for q in created] == [
        (i["query"], i["language"], i["country"]) for i in ITEMS
    ]
    assert {q["project"] for q in created} == {str(tenant.project_id)}
    assert list_queries(client, tenant)["page"]["totalRecords"] == 3 + len(ITEMS)


def test_create_many_is_all_or_nothing(client: FlaskClient, tenant: Tenant) -> None:
    """One bad item refuses the whole batch, naming the item's index."""
    items = [{"query": "fine"}, {"query": "bad", "country": "USA"}]
    response = client.post("/api/queries/many", headers=tenant.headers(), json={"queries": items})
    assert_error(response, 400, ["queries.1.country: Length must be 2."])
    assert list_queries(client, tenant)["page"]["totalRecords"] == 3


@pytest.mark.parametrize("body", [{"queries": []}, {}, {"queries": "x"}])
def test_create_many_needs_a_list_of_queries(
    client: FlaskClient, tenant: Tenant, body: dict[str, Any]
) -> None:
    """``queries`` must be a non-empty list."""
    lines = validation_messages(
        client.post("/api/queries/many", headers=tenant.headers(), json=body)
    )
    assert all(line.startswith("queries: ") for line in lines), lines


def test_list_page_envelope(client: FlaskClient, tenant: Tenant) -> None:
    """The list answers ``{page: {...}, results}`` with the default limit of 50."""
    page = list_queries(client, tenant)
    assert page["page"] == {
        "totalRecords": 3,
        "limit": 50,
        "currentPage": 1,
        "totalPages": 1,
        "nextPage": None,
        "prevPage": None,
    }
    assert sorted(q["id"] for q in page["results"]) == sorted(str(q) for q in tenant.query_ids)


def test_list_paging(client: FlaskClient, tenant: Tenant, catalogue: list[Any]) -> None:
    """limit and page walk the five queries two at a time, without overlap."""
    first = list_queries(client, tenant, qs="?limit=2&page=1")
    second = list_queries(client, tenant, qs="?limit=2&page=2")
    third = list_queries(client, tenant, qs="?limit=2&page=3")
    beyond = list_queries(client, tenant, qs="?limit=2&page=4")
    assert first["page"] == {
        "totalRecords": 5,
        "limit": 2,
        "currentPage": 1,
        "totalPages": 3,
        "nextPage": 2,
        "prevPage": None,
    }
    assert (second["page"]["nextPage"], second["page"]["prevPage"]) == (3, 1)
    assert (third["page"]["nextPage"], third["page"]["prevPage"]) == (None, 2)
    assert [len(p["results"]) for p in (first, second, third)] == [2, 2, 1]
    assert beyond["results"] == [] and beyond["page"]["currentPage"] == 4
    ids = [q["id"] for p in (first, second, third) for q in p["results"]]
    assert sorted(ids) == sorted(q["id"] for q in catalogue)


def test_list_default_order_is_newest_first(
    client: FlaskClient, tenant: Tenant, catalogue: list[Any]
) -> None:
    """Without a sort the newest query comes first."""
    created = add_many(client, tenant, [{"query": "zz newest"}])
    assert texts(list_queries(client, tenant))[0] == created[0]["query"]


def test_list_empty_project(client: FlaskClient, tenant: Tenant, empty_project: uuid.UUID) -> None:
    """A project without queries lists an empty page with zero pages."""
    headers = {**tenant.headers(), "x-project-id": str(empty_project)}
    response = client.post("/api/queries/list", headers=headers, json={})
    assert response.status_code == 200
    assert response.json == {
        "page": {
            "totalRecords": 0,
            "limit": 50,
            "currentPage": 1,
            "totalPages": 0,
            "nextPage": None,
            "prevPage": None,
        },
        "results": [],
    }


@pytest.mark.parametrize(
    ("needle", "expected"),
    [
        (
            "CRM",
            {
                ITEMS[0]["query"],
                ITEMS[1]["query"],
                ITEMS[2]["query"],
                ITEMS[3]["query"],
                ITEMS[4]["query"],
            },
        ),
        ("meilleur", {ITEMS[1]["query"]}),
        ("BEST", {ITEMS[0]["query"], ITEMS[2]["query"]}),
        ("100%", {ITEMS[3]["query"]}),
        ("_", {ITEMS[4]["query"]}),
        ("nothing like this", set()),
    ],
)
def test_list_filter_query_substring(
    client: FlaskClient, tenant: Tenant, catalogue: list[Any], needle: str, expected: set[str]
) -> None:
    """``query`` is a case-insensitive substring match (% and _ are literal)."""
    page = list_queries(client, tenant, {"query": needle})
    assert set(texts(page)) == expected
    assert page["page"]["totalRecords"] == len(expected)


def test_list_filter_languages(client: FlaskClient, tenant: Tenant, catalogue: list[Any]) -> None:
    """``languages`` keeps queries in any of the given languages (any case)."""
    page = list_queries(client, tenant, {"languages": ["fr", "DE"]})
    assert set(texts(page)) == {ITEMS[1]["query"], ITEMS[2]["query"]}


def test_list_filter_countries(client: FlaskClient, tenant: Tenant, catalogue: list[Any]) -> None:
    """``countries`` keeps queries in any of the given countries (any case)."""
    page = list_queries(client, tenant, {"countries": ["gb", "DE"]})
    assert set(texts(page)) == {ITEMS[2]["query"], ITEMS[3]["query"]}


def test_list_filter_country_stored_in_lower_case(client: FlaskClient, tenant: Tenant) -> None:
    """A lower-case country is stored upper-case, so the (any-case) filter finds it."""
    created = add_many(client, tenant, [{"query": "lower", "country": "gb"}])
    assert created[0]["country"] == "GB"
    for countries in (["gb"], ["GB"]):
        assert texts(list_queries(client, tenant, {"countries": countries})) == ["lower"]


def test_list_filters_combine(client: FlaskClient, tenant: Tenant, catalogue: list[Any]) -> None:
    """Filters are ANDed together."""
    page = list_queries(
        client, tenant, {"query": "crm", "languages": ["en"], "countries": ["US", "GB"]}
    )
    assert set(texts(page)) == {ITEMS[0]["query"], ITEMS[3]["query"]}


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ([{"field": "query", "direction": "ASC"}], sorted(i["query"] for i in ITEMS)),
        (
            [{"field": "query", "direction": "DESC"}],
            sorted((i["query"] for i in ITEMS), reverse=True),
        ),
        ([{"field": "query"}], sorted((i["query"] for i in ITEMS), reverse=True)),
        (
            [{"field": "createdAt", "direction": "ASC"}],
            [i["query"] for i in ITEMS],
        ),
        (
            [{"field": "createdAt", "direction": "DESC"}],
            [i["query"] for i in reversed(ITEMS)],
        ),
    ],
)
def test_list_sort(
    client: FlaskClient,
    tenant: Tenant,
    catalogue: list[Any],
    sort: list[dict[str, str]],
    expected: list[str],
) -> None:
    """``sort`` orders by field and direction (DESC by default)."""
    # The texts start with distinct lower-case letters, so every collation agrees.
    page = list_queries(client, tenant, {"sort": sort})
    assert texts(page) == expected


def test_list_sort_by_several_fields(
    client: FlaskClient, tenant: Tenant, catalogue: list[Any]
) -> None:
    """Several sort keys apply in order: country ASC, then language DESC."""
    page = list_queries(
        client,
        tenant,
        {
            "sort": [
                {"field": "country", "direction": "ASC"},
                {"field": "language", "direction": "DESC"},
            ]
        },
    )
    assert [(q["country"], q["language"]) for q in page["results"]] == [
        ("DE", "de"),
        ("FR", "fr"),
        ("GB", "en"),
        ("US", "en-US"),
        ("US", "en"),
    ]


@pytest.mark.parametrize(
    ("qs", "line"),
    [
        ("?limit=0", "limit: Must be greater than or equal to 1 and less than or equal to 500."),
        ("?limit=501", "limit: Must be greater than or equal to 1 and less than or equal to 500."),
        ("?limit=ten", "limit: Not a valid integer."),
        ("?page=0", PAGE_RANGE),
    ],
)
def test_list_paging_bounds(client: FlaskClient, tenant: Tenant, qs: str, line: str) -> None:
    """limit is 1..500 and page starts at 1."""
    response = client.post(f"/api/queries/list{qs}", headers=tenant.headers(), json={})
    assert_error(response, 400, [line])


def test_list_limit_500_is_allowed(client: FlaskClient, tenant: Tenant) -> None:
    """The upper bound itself is accepted."""
    assert list_queries(client, tenant, qs="?limit=500")["page"]["limit"] == 500


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sort": [{"field": "text"}]}, "sort.0.field"),
        ({"sort": [{"field": "query", "direction": "asc"}]}, "sort.0.direction"),
        ({"sort": [{"direction": "ASC"}]}, "sort.0.field"),
        ({"languages": "en"}, "languages"),
        ({"countries": ["USA"]}, "countries.0"),
        ({"query": 5}, "query"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_list_bad_filters_are_400(
    client: FlaskClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    """Bad filter or sort fields are a 400 naming the field."""
    lines = validation_messages(
        client.post("/api/queries/list", headers=tenant.headers(), json=body)
    )
    assert len(lines) == 1 and lines[0].startswith(f"{field}: "), lines


@pytest.mark.parametrize(
    ("item", "line"),
    [
        ({"query": "q", "language": "e"}, "language: Length must be between 2 and 5."),
        ({"query": "q", "language": "en-GB-x"}, "language: Length must be between 2 and 5."),
        ({"query": "q", "country": "USA"}, "country: Length must be 2."),
        ({"query": "q", "country": "U"}, "country: Length must be 2."),
        # Found by schemathesis: upper-cased, "ß" is "SS", three characters in a column of two.
        ({"query": "q", "country": "oß"}, "country: Must be an ISO 3166-1 alpha-2 code (A-Z)."),
        ({"query": "q", "country": "é1"}, "country: Must be an ISO 3166-1 alpha-2 code (A-Z)."),
        ({"query": ""}, "query: Length must be between 1 and 2000."),
        ({"language": "en"}, "query: Missing data for required field."),
        ({"query": "q", "tagIds": ["nope"]}, "tagIds.0: Not a valid UUID."),
    ],
)
def test_create_bad_fields_are_400(
    client: FlaskClient, tenant: Tenant, item: dict[str, Any], line: str
) -> None:
    """Each field's constraint is enforced with a ``field: reason`` line."""
    response = client.post("/api/queries", headers=tenant.headers(), json=item)
    assert_error(response, 400, [line])


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/queries"), ("POST", "/api/queries/many"), ("POST", "/api/queries/list")],
)
def test_project_header_is_required(
    client: FlaskClient, tenant: Tenant, method: str, path: str
) -> None:
    """Queries live in a project: without x-project-id the request is a 400."""
    body: dict[str, Any] = {"query": "q", "queries": [{"query": "q"}]}
    if path.endswith("/list"):
        body = {}
    elif path.endswith("/many"):
        body = {"queries": [{"query": "q"}]}
    else:
        body = {"query": "q"}
    response = client.open(path, method=method, headers=tenant.headers(project=False), json=body)
    assert_error(response, 400, ["x-project-id: header is required"])


def test_malformed_project_header_is_400(client: FlaskClient, tenant: Tenant) -> None:
    """x-project-id must be a UUID."""
    headers = {**tenant.headers(), "x-project-id": "project-1"}
    response = client.post("/api/queries", headers=headers, json={"query": "q"})
    assert_error(response, 400, ["x-project-id: must be a UUID"])


def test_create_in_other_tenants_project_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """A query cannot be added to another organisation's project."""
    headers = {**tenant.headers(), "x-project-id": str(other_tenant.project_id)}
    response = client.post("/api/queries", headers=headers, json={"query": "sneaky"})
    assert_error(response, 404, f"Project {other_tenant.project_id} not found")
    theirs = list_queries(client, other_tenant)
    assert theirs["page"]["totalRecords"] == 3


def test_list_other_tenants_project_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's queries cannot be listed."""
    headers = {**tenant.headers(), "x-project-id": str(other_tenant.project_id)}
    response = client.post("/api/queries/list", headers=headers, json={})
    assert_error(response, 404, f"Project {other_tenant.project_id} not found")


def test_get_other_tenants_query_is_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Another organisation's query id is a 404."""
    query_id = other_tenant.query_ids[0]
    response = client.get(f"/api/queries/{query_id}", headers=tenant.headers())
    assert_error(response, 404, f"Query {query_id} not found")


def test_get_unknown_and_non_uuid_query_is_404(client: FlaskClient, tenant: Tenant) -> None:
    """Unknown and malformed query ids are both 404."""
    unknown = uuid.uuid4()
    assert_error(
        client.get(f"/api/queries/{unknown}", headers=tenant.headers()),
        404,
        f"Query {unknown} not found",
    )
    assert_error(
        client.get("/api/queries/42", headers=tenant.headers()), 404, "Cannot GET /api/queries/42"
    )
