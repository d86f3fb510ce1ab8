"""Hostile input is a 4xx in the family's own envelope, never a 500 or an HTML page.

Every family is covered as it is discovered (``api.families``), with a JSON endpoint of
its own found in the app's URL map, so a new family is tested without changing this file.
The limits are the defaults of ``shared.settings`` (api/request_limits.py enforces them);
the last tests run the real gunicorn, as the Procfile starts it, and speak raw HTTP.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from marshmallow import Schema, fields, validate
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from api.errors import default_envelope
from api.families import EXTENSION, Family, discover
from api.ui import is_ui_path
from shared.settings import get_settings
from tests.support import Tenant, running_api, uncredentialed_path

FAMILIES = {family.name: family for family in discover()}
DEPTH = 64  # JOBYARD_MAX_JSON_DEPTH
DIGITS = 100  # JOBYARD_MAX_JSON_NUMBER_DIGITS
URL_BYTES = 4096  # JOBYARD_MAX_URL_BYTES
HEADER_BYTES = 8190  # JOBYARD_MAX_HEADER_BYTES
HEADER_COUNT = 100  # JOBYARD_MAX_HEADER_COUNT
TOO_DEEP = f"JSON nested deeper than {DEPTH} levels"
TOO_LONG = f"JSON number with more than {DIGITS} digits"


def test_the_limits_are_the_settings_defaults() -> None:
    """The constants above are what the app enforces (else every test below is moot)."""
    settings = get_settings()
    assert (
        settings.max_json_depth,
        settings.max_json_number_digits,
        settings.max_url_bytes,
        settings.max_header_bytes,
        settings.max_header_count,
    ) == (DEPTH, DIGITS, URL_BYTES, HEADER_BYTES, HEADER_COUNT)
    assert {"mentionlab", "superai", "valpay", "smartdb"} <= set(FAMILIES)


# ------------------------------------------------------------------------------ helpers


@dataclass
class Endpoint:
    family: Family
    path: str  # with the tenant's project id for every path variable

    def expect(self, response: TestResponse, status: int, message: str, *, lines: bool) -> None:
        """``response`` is exactly the family's envelope of this error (a body rejected
        as a whole says why in its one detail line, as "Invalid JSON body." does)."""
        assert response.status_code == status, response.get_data(as_text=True)
        assert response.mimetype == "application/json"
        assert response.json == self.family.envelope(
            status, message, [message] if lines else [], None
        )


def json_endpoint(app: Flask, family: Family, tenant: Tenant) -> Endpoint:
    """The family's POST route of the shortest path that takes a JSON body."""
    with app.app_context():
        candidates = []
        for rule in app.url_map.iter_rules():
            if "POST" not in (rule.methods or ()) or family_of(app, rule.rule) is not family:
                continue
            view = getattr(app.view_functions[rule.endpoint], "view_class", None)
            if any(p["in"] == "json" for p in arguments(getattr(view, "post", None))):
                candidates.append(rule)
    assert candidates, f"{family.name} has no POST route with a JSON body"
    rule = min(candidates, key=lambda r: (len(r.rule), r.rule))
    path = rule.rule
    for name in rule.arguments:
        path = path.replace(f"<{name}>", str(tenant.project_id))
    assert "<" not in path, path
    return Endpoint(family, path)


def family_of(app: Flask, path: str) -> Family | None:
    for family in app.extensions[EXTENSION]:
        if any(path.startswith(prefix) for prefix in family.url_prefixes):
            return family
    return None


def arguments(view_method: Any) -> list[dict[str, Any]]:
    """The flask-smorest ``@blp.arguments`` of a view method (location and schema), not
    the parameters documented beside them (api.openapi.documented_parameters), which
    carry a JSON schema, not a marshmallow one."""
    doc = getattr(view_method, "_apidoc", {}) if view_method is not None else {}
    parameters: list[dict[str, Any]] = doc.get("arguments", {}).get("parameters", [])
    return [p for p in parameters if not isinstance(p["schema"], dict)]


def credentials(tenant: Tenant) -> dict[str, str]:
    """What every family accepts: its API key header and the bearer JWT (valpay)."""
    return {
        **tenant.headers(),
        "API-KEY": tenant.api_key,
        "Authorization": f"Bearer {tenant.token}",
    }


@pytest.fixture(params=sorted(FAMILIES))
def endpoint(request: pytest.FixtureRequest, app: Flask, tenant: Tenant) -> Endpoint:
    return json_endpoint(app, FAMILIES[request.param], tenant)


def post_raw(client: FlaskClient, endpoint: Endpoint, tenant: Tenant, raw: str) -> TestResponse:
    return client.post(
        endpoint.path, headers=credentials(tenant), data=raw, content_type="application/json"
    )


def nested_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_objects(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


# --------------------------------------------------------------------------- JSON bodies


@pytest.mark.parametrize(
    "raw",
    [
        nested_arrays(10_000),
        nested_objects(10_000),
        nested_arrays(DEPTH + 1),
        nested_objects(DEPTH + 1),
        '{"a": [' + nested_objects(DEPTH - 1) + "]}",
        nested_arrays(10_000)[:-5000],  # unterminated as well
    ],
    ids=["arrays-10000", "objects-10000", "arrays-65", "objects-65", "mixed-65", "unclosed"],
)
def test_deep_nesting_is_400(
    client: FlaskClient, endpoint: Endpoint, tenant: Tenant, raw: str
) -> None:
    """A body nested past the limit is refused as a whole, before any schema sees it."""
    endpoint.expect(post_raw(client, endpoint, tenant, raw), 400, TOO_DEEP, lines=True)


@pytest.mark.parametrize("raw", [nested_arrays(DEPTH), nested_objects(DEPTH)])
def test_nesting_at_the_limit_is_parsed(
    client: FlaskClient, endpoint: Endpoint, tenant: Tenant, raw: str
) -> None:
    """At the limit the body reaches the schema (and is refused for its content)."""
    response = post_raw(client, endpoint, tenant, raw)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert TOO_DEEP not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"n": ' + "9" * 5001 + "}", TOO_LONG),
        ('{"n": -' + "9" * 5001 + "}", TOO_LONG),
        ('{"n": [1, ' + "1" * (DIGITS + 1) + "]}", TOO_LONG),
        ('{"n": 0.' + "5" * DIGITS + "}", TOO_LONG),
        ('{"n": 1e999}', "JSON number out of range: 1e999"),
        ('{"n": -1.5E+400}', "JSON number out of range: -1.5E+400"),
        ('{"n": NaN}', "NaN is not a JSON value"),
        ('{"n": [Infinity]}', "Infinity is not a JSON value"),
        ('{"n": -Infinity}', "-Infinity is not a JSON value"),
    ],
    ids=[
        "5001-digits",
        "negative",
        f"{DIGITS + 1}-digits",
        "long-fraction",
        "1e999",
        "-1.5e400",
        "nan",
        "infinity",
        "-infinity",
    ],
)
def test_numbers_beyond_the_limits_are_400(
    client: FlaskClient, endpoint: Endpoint, tenant: Tenant, raw: str, message: str
) -> None:
    """Huge integers (Python refuses over 4,300 digits: a 500), floats beyond a double and
    NaN/Infinity (PostgreSQL refuses them in JSON: a 500) are refused up front."""
    endpoint.expect(post_raw(client, endpoint, tenant, raw), 400, message, lines=True)


def test_numbers_within_the_limits_reach_the_schema(
    client: FlaskClient, endpoint: Endpoint, tenant: Tenant
) -> None:
    raw = '{"n": [-' + "9" * DIGITS + ", 1e308, 1e-999, 0.5]}"
    response = post_raw(client, endpoint, tenant, raw)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "JSON number" not in response.get_data(as_text=True)


def test_superai_inputs_with_nan_are_refused_not_stored(
    client: FlaskClient, tenant: Tenant
) -> None:
    """Free-form JSON (a batch's inputs) went to PostgreSQL, which refused NaN: a 500."""
    endpoint = Endpoint(FAMILIES["superai"], f"/v1/apps/{tenant.project_id}/jobs")
    raw = '{"inputs": [{"x": 1}, {"x": NaN}]}'
    endpoint.expect(
        post_raw(client, endpoint, tenant, raw), 400, "NaN is not a JSON value", lines=True
    )
    ok = post_raw(client, endpoint, tenant, '{"inputs": [{"x": 1.5}]}')
    assert ok.status_code == 200, ok.get_data(as_text=True)


# ---------------------------------------------------------------------------- long lists


@pytest.mark.parametrize("path", ["/api/jobs/list", "/api/queries/list", "/api/cached-jobs/list"])
def test_sort_of_2001_terms_is_400(client: FlaskClient, tenant: Tenant, path: str) -> None:
    """On SQLite (``make up``) an ORDER BY of over 2,000 terms was a 500; sorts are capped."""
    body = {"sort": [{"field": "createdAt", "direction": "ASC"}] * 2001}
    response = client.post(path, headers=tenant.headers(), json=body)
    Endpoint(FAMILIES["mentionlab"], path).expect(
        response, 400, "sort: Longer than maximum length 10.", lines=True
    )
    few = client.post(path, headers=tenant.headers(), json={"sort": body["sort"][:10]})
    assert few.status_code == 200, few.get_data(as_text=True)


def uncapped_lists(schema: Schema, where: str, seen: set[int]) -> Iterator[str]:
    """The list fields of ``schema`` (nested ones too) that a request may make any length."""
    if id(schema) in seen:
        return
    seen.add(id(schema))
    for name, field in schema.load_fields.items():
        yield from uncapped_field(field, f"{where}.{name}", seen)


def uncapped_field(field: fields.Field, where: str, seen: set[int]) -> Iterator[str]:
    if isinstance(field, fields.List):
        capped = any(isinstance(v, validate.Length) and v.max is not None for v in field.validators)
        if not capped:
            yield where
        yield from uncapped_field(field.inner, f"{where}[]", seen)
    elif isinstance(field, fields.Nested):
        yield from uncapped_lists(field.schema, where, seen)
    elif isinstance(field, fields.Dict) and field.value_field is not None:
        yield from uncapped_field(field.value_field, f"{where}{{}}", seen)


def test_every_request_list_has_a_length_cap(app: Flask) -> None:
    """Each list field of every family's request schemas (body, query...) has a
    ``Length(max=...)``: an array as long as 4 MB allows is a 400, not a slow path."""
    found: list[str] = []
    for rule in app.url_map.iter_rules():
        view = getattr(app.view_functions[rule.endpoint], "view_class", None)
        for method in sorted(rule.methods or ()):
            for parameter in arguments(getattr(view, method.lower(), None)):
                schema = parameter["schema"]
                schema = schema() if isinstance(schema, type) else schema
                found += uncapped_lists(schema, f"{method} {rule.rule} {parameter['in']}", set())
    assert not found, "lists without a length cap:\n" + "\n".join(sorted(set(found)))


# ------------------------------------------------------------------------ URL and headers


def test_over_long_url_is_414(client: FlaskClient, endpoint: Endpoint, tenant: Tenant) -> None:
    """Past the URL limit: 414 in the envelope (gunicorn alone would answer an HTML page)."""
    query = "?q=" + "a" * URL_BYTES
    response = client.post(endpoint.path + query, headers=credentials(tenant), json={})
    endpoint.expect(response, 414, f"Request URL longer than {URL_BYTES} bytes", lines=False)
    at_limit = "?q=" + "a" * (URL_BYTES - len(endpoint.path) - 3)
    assert len(endpoint.path + at_limit) == URL_BYTES
    response = client.post(endpoint.path + at_limit, headers=credentials(tenant), json={})
    assert response.status_code != 414, response.get_data(as_text=True)


def test_over_long_path_is_414(client: FlaskClient, endpoint: Endpoint, tenant: Tenant) -> None:
    response = client.get(endpoint.path + "/" + "x" * URL_BYTES, headers=credentials(tenant))
    endpoint.expect(response, 414, f"Request URL longer than {URL_BYTES} bytes", lines=False)


def test_over_long_header_is_431(client: FlaskClient, endpoint: Endpoint, tenant: Tenant) -> None:
    """A header field (name, ": ", value) over the limit: 431 in the envelope."""
    name = "X-Padding"
    value = "v" * (HEADER_BYTES - len(name) - 2)
    over = {**credentials(tenant), name: value + "v"}
    response = client.post(endpoint.path, headers=over, json={})
    message = f"Request header {name} longer than {HEADER_BYTES} bytes"
    endpoint.expect(response, 431, message, lines=False)
    at_limit = client.post(endpoint.path, headers={**credentials(tenant), name: value}, json={})
    assert at_limit.status_code != 431, at_limit.get_data(as_text=True)


def test_over_long_credential_is_431(
    client: FlaskClient, endpoint: Endpoint, tenant: Tenant
) -> None:
    """Before authentication: a huge token is never looked up."""
    headers = {"Authorization": "Bearer " + "a" * HEADER_BYTES, "x-api-key": "k"}
    response = client.post(endpoint.path, headers=headers, json={})
    message = f"Request header Authorization longer than {HEADER_BYTES} bytes"
    endpoint.expect(response, 431, message, lines=False)


def test_too_many_headers_is_431(client: FlaskClient, endpoint: Endpoint, tenant: Tenant) -> None:
    extra = {f"X-Extra-{i}": "1" for i in range(HEADER_COUNT)}
    response = client.post(endpoint.path, headers={**credentials(tenant), **extra}, json={})
    message = f"More than {HEADER_COUNT} request header fields"
    endpoint.expect(response, 431, message, lines=False)
    few = {f"X-Extra-{i}": "1" for i in range(HEADER_COUNT // 2)}
    response = client.post(endpoint.path, headers={**credentials(tenant), **few}, json={})
    assert response.status_code != 431, response.get_data(as_text=True)


# --------------------------------------------------------------------- the real gunicorn


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def raw_request(port: int, head: bytes, body: bytes = b"") -> RawAnswer:
    """Send ``head`` (request line and headers, without the blank line) and ``body``,
    and read the whole answer (the connection is closed after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head + b"Connection: close\r\n\r\n" + body)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    head_part, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(status_line.split()[1]), headers, body)


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The Procfile's ``web`` line (deploy/gunicorn.conf.py), one worker, on a free port."""
    with running_api(tmp_path_factory.mktemp("gunicorn")) as base_url:
        yield int(base_url.rsplit(":", 1)[1])


def family_path(family: Family) -> str:
    return uncredentialed_path(family, list(FAMILIES.values()))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_gunicorn_answers_long_urls_and_headers_in_json(gunicorn: int, name: str) -> None:
    """Between the app's limits and gunicorn's (raised above them in its config), the
    client gets its family's JSON envelope, not gunicorn's HTML page."""
    family = FAMILIES[name]
    path = family_path(family)
    request_line = f"GET {path}?q={'a' * 6000} HTTP/1.1\r\nHost: t\r\n".encode()
    answer = raw_request(gunicorn, request_line)
    message = f"Request URL longer than {URL_BYTES} bytes"
    assert (answer.status, answer.json()) == (414, family.envelope(414, message, [], None))

    long_header = f"GET {path} HTTP/1.1\r\nHost: t\r\nX-Padding: {'v' * 10_000}\r\n".encode()
    answer = raw_request(gunicorn, long_header)
    message = f"Request header X-Padding longer than {HEADER_BYTES} bytes"
    assert (answer.status, answer.json()) == (431, family.envelope(431, message, [], None))

    many = "".join(f"X-Extra-{i}: 1\r\n" for i in range(HEADER_COUNT + 20))
    answer = raw_request(gunicorn, f"GET {path} HTTP/1.1\r\nHost: t\r\n{many}".encode())
    message = f"More than {HEADER_COUNT} request header fields"
    assert (answer.status, answer.json()) == (431, family.envelope(431, message, [], None))


def test_gunicorn_refuses_a_deep_body_in_json(gunicorn: int) -> None:
    """The body guard through the real server too (a 500 there before)."""
    body = nested_arrays(10_000).encode()
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {uuid.uuid4().hex}\r\nContent-Length: {len(body)}\r\n"
    ).encode()
    answer = raw_request(gunicorn, head, body)
    assert (answer.status, answer.json()) == (
        400,
        FAMILIES["valpay"].envelope(400, TOO_DEEP, [TOO_DEEP], None),
    )


# ------------------------------------------------------------ NUL in the URL and headers

NUL_REFUSED = "Must not contain NUL characters."


def nul_answer(family: Family | None, *where: str) -> dict[str, Any]:
    """The 400 of the family (or of the app's own paths) naming where the NULs were."""
    lines = [f"{w}: {NUL_REFUSED}" for w in where]
    envelope = family.envelope if family is not None else default_envelope
    return envelope(400, "Validation failed: " + "; ".join(lines), lines, None)


def with_nul(rule: Rule) -> str:
    """``rule``'s path with ``a%00b`` for each variable (and ``%00`` at the end of a path
    without any), so that a route of any family matches it or would have."""
    if not rule.arguments:
        return rule.rule.rstrip("/") + "%00"
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "a%00b", rule.rule)


def test_nul_anywhere_in_a_path_is_400_on_every_route(
    app: Flask, client: FlaskClient, tenant: Tenant
) -> None:
    """Every route of every family (and the app's own), every method: a NUL in the path
    is refused before any view runs, in the family's envelope (the dashboard's: a page). Smart DB's names went to
    PostgreSQL, which refuses NUL: psycopg's DataError, a 500 (10 routes)."""
    wrong: list[str] = []
    for rule in app.url_map.iter_rules():
        path = with_nul(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method, headers=credentials(tenant), json={})
            if is_ui_path(rule.rule):  # the dashboard answers its errors as pages
                page = response.get_data(as_text=True)
                if response.status_code != 400 or NUL_REFUSED not in page:
                    wrong.append(f"{method} {path}: {response.status_code} {page[:200]}")
                continue
            expected = nul_answer(family_of(app, rule.rule), "path")
            if (response.status_code, response.json) != (400, expected):
                wrong.append(f"{method} {path}: {response.status_code} {response.json}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("limit=1&q=a%00b", ["query.q"]),
        ("limit=1%00", ["query.limit"]),
        ("a%00b=1", ["query: a parameter name"]),
        ("x=%00&y=ok&z=%00", ["query.x", "query.z"]),
    ],
    ids=["value", "known-parameter", "name", "two"],
)
def test_nul_in_the_query_string_is_400(
    client: FlaskClient, endpoint: Endpoint, tenant: Tenant, query: str, where: list[str]
) -> None:
    response = client.get(f"{endpoint.path}?{query}", headers=credentials(tenant))
    assert (response.status_code, response.json) == (400, nul_answer(endpoint.family, *where))


def test_nul_in_a_header_value_is_400(
    client: FlaskClient, endpoint: Endpoint, tenant: Tenant
) -> None:
    """gunicorn refuses it itself; a server that passes it on must not reach the database
    with it (an Idempotency-Key is stored)."""
    headers = {**credentials(tenant), "Idempotency-Key": "k\x00"}
    response = client.post(endpoint.path, headers=headers, json={})
    expected = nul_answer(endpoint.family, "headers.Idempotency-Key")
    assert (response.status_code, response.json) == (400, expected)


def test_gunicorn_passes_a_nul_in_the_path_to_the_check(gunicorn: int) -> None:
    """Through the real server: ``%00`` in a Smart DB name is the 400, not a 500."""
    answer = raw_request(gunicorn, b"GET /jobs/a%00b HTTP/1.1\r\nHost: t\r\n")
    assert (answer.status, answer.json()) == (400, nul_answer(FAMILIES["smartdb"], "path"))


# ------------------------------------------------------------------ out-of-range dates

UTC_RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"
OUT_OF_RANGE = f"Out of range: must be from {UTC_RANGE} once in UTC."
INVALID = "Not a valid datetime."
AFTER_THE_LAST = "9999-12-31T23:59:59-23:59"  # 10000-01-01T23:58:59 in UTC
BEFORE_THE_FIRST = "0001-01-01T00:00:00+01:00"  # 0000-12-31T23:00:00 in UTC


def validation_answer(family: Family, *lines: str) -> dict[str, Any]:
    return family.envelope(400, "Validation failed: " + "; ".join(lines), list(lines), None)


@pytest.mark.parametrize(
    ("field", "value", "line"),
    [
        ("createdStartDate", AFTER_THE_LAST, OUT_OF_RANGE),
        ("createdEndDate", BEFORE_THE_FIRST, OUT_OF_RANGE),
        ("createdStartDate", "10000-01-01T00:00:00Z", INVALID),
        ("createdEndDate", "0000-12-31T23:00:00Z", INVALID),
    ],
)
def test_superai_list_dates_out_of_range_are_400(
    client: FlaskClient, tenant: Tenant, field: str, value: str, line: str
) -> None:
    """Converted to UTC for the query, these overflowed: an OverflowError, a 500."""
    response = client.get(
        f"/v1/apps/{tenant.project_id}/jobs",
        headers=credentials(tenant),
        query_string={field: value},
    )
    expected = validation_answer(FAMILIES["superai"], f"{field}: {line}")
    assert (response.status_code, response.json) == (400, expected)


@pytest.mark.parametrize(
    "query",
    [
        {"createdStartDate": "0001-01-01T00:00:00Z", "createdEndDate": "9999-12-31T23:59:59Z"},
        {"createdStartDate": "0001-01-01T00:00:00-01:00"},
        {"createdEndDate": "9999-12-31T23:59:59+23:59"},
    ],
    ids=["the-whole-range", "the-first-day-west", "the-last-day-east"],
)
def test_superai_list_dates_at_the_ends_of_the_range_list(
    client: FlaskClient, tenant: Tenant, query: dict[str, str]
) -> None:
    response = client.get(
        f"/v1/apps/{tenant.project_id}/jobs", headers=credentials(tenant), query_string=query
    )
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("since", [AFTER_THE_LAST, BEFORE_THE_FIRST])
def test_superai_resend_since_out_of_range_is_400(
    client: FlaskClient, tenant: Tenant, since: str
) -> None:
    path = f"/v1/apps/{tenant.project_id}/batches/{uuid.uuid4()}/deliveries/resend"
    response = client.post(path, headers=credentials(tenant), json={"since": since})
    expected = validation_answer(FAMILIES["superai"], f"since: {OUT_OF_RANGE}")
    assert (response.status_code, response.json) == (400, expected)


MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MS_RANGE = f"Must be greater than or equal to 0 and less than or equal to {MAX_MS}."


@pytest.mark.parametrize(
    ("field", "value"),
    [("dateFrom", MAX_MS + 1), ("dateTo", -1), ("dateTo", 10**30), ("dateFrom", -(10**30))],
)
def test_valpay_dates_beyond_datetime_are_400(
    client: FlaskClient, tenant: Tenant, field: str, value: int
) -> None:
    response = client.get(
        "/v1/jobs", headers=credentials(tenant), query_string={"limit": 1, field: value}
    )
    expected = validation_answer(FAMILIES["valpay"], f"{field}: {MS_RANGE}")
    assert (response.status_code, response.json) == (400, expected)


def test_valpay_dates_at_the_ends_of_the_range_list(client: FlaskClient, tenant: Tenant) -> None:
    """The last millisecond is exact (a float on the way made it 23:59:59.998993)."""
    created = client.post(
        f"/v1/apps/{tenant.project_id}/jobs",
        headers=credentials(tenant),
        json={"inputs": [{"x": 1}]},
    )
    assert created.status_code == 200, created.get_data(as_text=True)
    response = client.get(
        "/v1/jobs",
        headers=credentials(tenant),
        query_string={"limit": 10, "dateFrom": 0, "dateTo": MAX_MS},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["data"]["count"] == 1


def cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


A_ROW = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("sort", "value", "row_id"),
    [
        ("createdAt", {"t": AFTER_THE_LAST}, A_ROW),
        ("updatedAt", {"t": BEFORE_THE_FIRST}, A_ROW),
        ("createdAt", {"t": "0000-01-01T00:00:00"}, A_ROW),
        ("createdAt", "2026-01-01T00:00:00Z", A_ROW),
        ("createdAt", 5, A_ROW),
        ("createdAt", {"t": 5}, A_ROW),
        ("status", "pending\x00", A_ROW),
        ("status", "pending\ud800", A_ROW),
        ("status", {"t": "2026-01-01T00:00:00Z"}, A_ROW),
        ("status", None, A_ROW),
        ("status", "pending", 5),
    ],
    ids=[
        "after-the-last",
        "before-the-first",
        "year-0",
        "time-not-wrapped",
        "number-for-a-time",
        "number-in-a-time",
        "nul",
        "lone-surrogate",
        "time-for-a-status",
        "null",
        "number-for-an-id",
    ],
)
def test_valpay_forged_cursors_are_400(
    client: FlaskClient, tenant: Tenant, sort: str, value: Any, row_id: Any
) -> None:
    """A cursor is opaque but only base64 of JSON: one forged with a time out of range, a
    NUL or a value of the wrong type for its sort reached the query (500s)."""
    forged = cursor({"s": sort, "d": True, "v": value, "id": row_id})
    response = client.get(
        "/v1/jobs",
        headers=credentials(tenant),
        query_string={"limit": 1, "sortBy": sort, "lastEvaluatedKey": forged},
    )
    message = "lastEvaluatedKey is not a cursor from a previous answer"
    expected = FAMILIES["valpay"].envelope(400, message, [], None)
    assert (response.status_code, response.json) == (400, expected)


@pytest.mark.parametrize(
    ("times", "line"),
    [
        ({"start_time": BEFORE_THE_FIRST}, "start_time is out of range"),
        ({"end_time": AFTER_THE_LAST}, "end_time is out of range"),
        ({"start_time": "0000-01-01T00:00:00"}, "start_time is not an ISO 8601 time"),
        ({"end_time": "10000-01-01T00:00:00"}, "end_time is not an ISO 8601 time"),
    ],
)
def test_smartdb_times_out_of_range_are_400(
    client: FlaskClient, tenant: Tenant, times: dict[str, str], line: str
) -> None:
    """Smart DB's own code (INVALID_DATETIME) with the field in its details."""
    body = {
        "job_name": "sync_orders",
        "source_table": "shop.orders",
        "kb_name": "orders_kb",
        "content_columns": ["product"],
        "filter_column": "created_at",
        "interval": "1 HOUR",
        "start_time": "2026-06-19T18:00:00",
        "end_time": "2026-06-20T18:00:00",
        **times,
    }
    response = client.post("/jobs/create", headers=credentials(tenant), json=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.json["error"]
    assert error["code"] == "INVALID_DATETIME", error
    assert len(error["details"]) == 1 and error["details"][0].startswith(line), error
