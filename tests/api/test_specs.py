"""What every family's spec says about errors, and the answers it documents
(api/openapi.py, api/errors.py); tests/api/test_schemathesis.py fuzzes the rest."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.families import Family, discover
from tests.support import Tenant

FAMILIES = {family.name: family for family in discover()}


def spec_of(client: FlaskClient, family: Family) -> dict[str, Any]:
    spec: dict[str, Any] = client.get(family.docs_prefix.rstrip("/") + "/openapi.json").json
    return spec


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict)
    ]


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        node = spec["components"][kind][name]
    return node


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_error_is_documented_in_the_familys_envelope(client: FlaskClient, name: str) -> None:
    family = FAMILIES[name]
    spec = spec_of(client, family)
    envelope = {"$ref": f"#/components/schemas/{family.error_schema.__name__}"}
    for method, path, operation in operations(spec):
        responses = operation["responses"]
        assert "default" not in responses, (method, path)
        # Validation answers 400, as every family does; no 422 from flask-smorest.
        for status in ("400", "401", "414", "429", "431", "503"):
            assert status in responses, (method, path, status)
        if "{" in path:
            assert "404" in responses, (method, path)
        if "requestBody" in operation:
            assert "413" in responses, (method, path)
        for status, response in responses.items():
            if int(status) >= 400:
                schema = resolve(spec, response)["content"]["application/json"]["schema"]
                assert schema == envelope, (method, path, status)
        if "422" in responses:
            assert resolve(spec, responses["422"])["description"] != "Unprocessable Entity"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/jobs/trigger", {"POST"}),
        ("PUT", "/v1/jobs", {"GET", "POST"}),
        ("PATCH", "/v1/apps/00000000-0000-0000-0000-000000000000/processor", {"GET", "PUT"}),
        ("PUT", "/knowledge_bases", {"GET", "POST"}),
    ],
)
def test_an_undeclared_method_is_405_with_allow_in_the_envelope(
    client: FlaskClient, tenant: Tenant, method: str, path: str, allowed: set[str]
) -> None:
    response = client.open(path, method=method, headers=tenant.headers())
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["Allow"].split(",")} == {
        *allowed,
        "HEAD" if "GET" in allowed else "OPTIONS",
        "OPTIONS",
    }
    assert response.is_json and "Cannot" in str(response.json)


def test_an_id_that_is_a_sibling_route_is_not_a_get(client: FlaskClient, tenant: Tenant) -> None:
    """Mentionlab's ids are UUIDs in the URL map: /api/jobs/trigger is POST only."""
    response = client.get("/api/jobs/trigger", headers=tenant.headers())
    assert response.status_code == 405
    assert response.json["message"] == "Cannot GET /api/jobs/trigger"


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": [{"text": "a\x00b"}]},
        {"inputs": [{"text": "ok"}], "metadata": {"k": "\x00"}},
        {"inputs": [{"a\x00": 1}]},
    ],
)
def test_nul_in_a_free_form_object_is_400_not_500(
    app: Flask, client: FlaskClient, tenant: Tenant, body: dict[str, Any]
) -> None:
    """PostgreSQL cannot store NUL in a JSON column either (it was a 500)."""
    response = client.post(
        f"/v1/apps/{tenant.project_id}/jobs", headers={"API-KEY": tenant.api_key}, json=body
    )
    assert response.status_code == 400, response.json
    assert any("NUL" in line for line in response.json["details"])


def request_strings(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every string schema a request may carry (parameters, path ones included, and JSON
    bodies, through their references), with where it is."""
    stack: list[tuple[Any, str]] = []
    for path, item in spec["paths"].items():
        for n, parameter in enumerate(item.get("parameters", [])):
            stack.append((parameter, f"{path} parameters/{n}"))
        for method, _, operation in operations({"paths": {path: item}}):
            for n, parameter in enumerate(operation.get("parameters", [])):
                stack.append((parameter, f"{method} {path} parameters/{n}"))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                stack.append((body, f"{method} {path} body"))
    found, seen = [], set()
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            stack += [(value, f"{where}/{n}") for n, value in enumerate(node)]
        elif isinstance(node, dict):
            if "$ref" in node:
                if node["$ref"] not in seen:
                    seen.add(node["$ref"])
                    stack.append((resolve(spec, node), node["$ref"]))
                continue
            kind = node.get("type")
            if kind == "string" or (isinstance(kind, list) and "string" in kind):
                found.append((where, node))
            stack += [(value, f"{where}/{key}") for key, value in node.items()]
    return found


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_string_says_it_holds_no_nul(client: FlaskClient, name: str) -> None:
    """A NUL anywhere in a request is a 400 (api/request_limits.py), so no string a
    request carries admits one in the spec (path parameters from the URL map included):
    a pattern that refuses it, a format or an enum (schemathesis generates NUL and
    expects schema-valid requests to be accepted)."""
    spec = spec_of(client, FAMILIES[name])
    strings = request_strings(spec)
    admits_nul = [
        where
        for where, schema in strings
        if not {"format", "enum"} & set(schema)
        and (
            "pattern" not in schema
            or any(re.search(schema["pattern"], s) for s in ("\x00", "a\x00", "http://a\x00"))
        )
    ]
    assert strings and not admits_nul, admits_nul


def answer_objects(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every object schema a success answer holds, at any depth (with where it is)."""
    stack: list[tuple[Any, str]] = []
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status.startswith("2") and isinstance(response, dict):
                for media in response.get("content", {}).values():
                    stack.append((media.get("schema"), f"{method} {path} {status}"))
    found, seen = [], set()
    while stack:
        node, where = stack.pop()
        if not isinstance(node, dict):
            continue
        if "$ref" in node:
            if node["$ref"] not in seen:
                seen.add(node["$ref"])
                stack.append((resolve(spec, node), node["$ref"].rsplit("/", 1)[-1]))
            continue
        if "properties" in node:
            found.append((where, node))
        children = [*node.get("properties", {}).items(), ("items", node.get("items"))]
        children += [
            (f"{key}/{n}", n_)
            for key in ("allOf", "anyOf", "oneOf")
            for n, n_ in enumerate(node.get(key, []))
        ]
        stack += [(child, f"{where}.{name}") for name, child in children]
    return found


# Keys some answers of a shape leave out (api.openapi.Answer.optional), and why.
OPTIONAL_KEYS = {
    "uuid",  # super.AI's create: only for a single input
    "lastEvaluatedKey",  # Valpay's list: absent on the last page
    "redirectUrl",  # a source without a redirect link
    "chunks",  # Smart DB: a knowledge base's count, on create and read, not in lists
}
# Values that are any JSON, as documented: a sync job's watermark (a time, a number or
# a string, as its filter column holds them).
ANY_JSON = {"synced_up_to"}
STATUS_KEYS = {"status", "state", "type", "jobType", "resultType", "outcome", "trigger"}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_answers_mark_what_they_always_hold_as_required(client: FlaskClient, name: str) -> None:
    """A generated client makes every field not ``required`` optional (``Unset``): each
    answer lists what it always holds as required, all but a few keys documented as
    sometimes absent."""
    objects = answer_objects(spec_of(client, FAMILIES[name]))
    assert objects
    for where, schema in objects:
        if schema.get("additionalProperties", False) is not False:
            continue  # a free-form object (a payload, metadata) documents no fields
        missing = set(schema["properties"]) - set(schema.get("required", [])) - OPTIONAL_KEYS
        assert not missing, (where, sorted(missing))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_answer_field_is_typed_and_every_status_an_enum(
    client: FlaskClient, name: str
) -> None:
    """No field of an answer is left as any JSON (Smart DB's ``data: {}`` was), and a
    status, state or type lists its values (a generated client makes it an enum)."""
    for where, schema in answer_objects(spec_of(client, FAMILIES[name])):
        for key, field in schema["properties"].items():
            typed = {"type", "$ref", "allOf", "anyOf", "oneOf", "enum"} & set(field)
            assert typed or key in ANY_JSON, f"{where}.{key} is untyped"
            if key in STATUS_KEYS and field.get("type") == "string":
                assert field.get("enum"), f"{where}.{key} has no enum"
