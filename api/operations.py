"""What each operation of the families' specs declares, held to on every request: the
query parameters it takes, and whether its body is JSON.

Clients are generated from the specs, so the server keeps every request to its
operation's spec, in every family and operation alike, from one index built with each
family's spec (:func:`index`) rather than a list per route:

- a query parameter the operation does not declare is a 400 that names it (and the ones
  the operation takes): a misspelled filter (``?stauts=failed``) or a cursor of another
  API (``?cursor=...`` on Valpay's list) would otherwise answer the unfiltered first page
  as if it were what the client asked for;
- a body sent to an operation that takes JSON without a JSON ``Content-Type`` (``curl
  -d`` sends ``application/x-www-form-urlencoded``, ``requests``' ``data=`` sends none)
  is a 415 that names the type expected, rather than being read as no body at all
  ("aiModels: Missing data for required field"). An operation whose body may be left out
  still takes none.

Both are answered in the family's envelope (:mod:`api.errors`) before authentication, as
the other checks of what a request holds are (:mod:`api.request_limits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, request
from flask_smorest.spec.plugins import FlaskPlugin
from werkzeug.exceptions import UnsupportedMediaType

from shared.errors import InvalidInput

EXTENSION = "jobyard.operations"  # (family, path, METHOD) -> Operation
BLUEPRINTS = "jobyard.operations.blueprints"  # blueprint name -> its family's name
JSON = "application/json"
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@dataclass(frozen=True)
class Operation:
    """What one operation of a spec declares about a request."""

    query_parameters: frozenset[str]
    json_body: bool


def index(app: Flask, family: str, blueprints: list[str], spec: dict[str, Any]) -> None:
    """Add the operations of a family's spec to the app's index. They are looked up by
    the family of the blueprint that routed the request: two families may serve one path
    (super.AI's and Valpay's ``/v1/jobs/{id}``), each with its own spec."""
    for blueprint in blueprints:
        app.extensions.setdefault(BLUEPRINTS, {})[blueprint] = family
    known: dict[tuple[str, str, str], Operation] = app.extensions.setdefault(EXTENSION, {})
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
            known[(family, path, method.upper())] = Operation(
                query_parameters=frozenset(
                    p["name"] for p in parameters if isinstance(p, dict) and p.get("in") == "query"
                ),
                json_body=JSON in operation.get("requestBody", {}).get("content", {}),
            )


def current_operation() -> Operation | None:
    """The spec's operation for this request (None where no route matched, and for the
    routes of no spec: /healthz, /docs, OPTIONS...)."""
    rule = request.url_rule
    family = current_app.extensions.get(BLUEPRINTS, {}).get(request.blueprint)
    if rule is None or family is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    path = FlaskPlugin.flaskpath2openapi(rule.rule)
    known: dict[tuple[str, str, str], Operation] = current_app.extensions.get(EXTENSION, {})
    return known.get((family, path, method))


def check_query_parameters(operation: Operation) -> None:
    unknown = [
        name for name in dict.fromkeys(request.args) if name not in operation.query_parameters
    ]
    if not unknown:
        return
    takes = ", ".join(sorted(operation.query_parameters)) or "none"
    lines = [
        f"query.{name}: Unknown query parameter (this operation takes: {takes})" for name in unknown
    ]
    raise InvalidInput("Validation failed: " + "; ".join(lines), details=lines)


def check_body_type(operation: Operation) -> None:
    if not operation.json_body or request.is_json or not request.get_data(cache=True):
        return
    given = request.headers.get("Content-Type")
    raise UnsupportedMediaType(
        f"Content-Type must be {JSON} for this request's body"
        + (f" (it was {given!r})" if given else " (it had none)")
    )


def check_operation() -> None:
    """``before_request`` of the app: the query parameters, then the body's type."""
    operation = current_operation()
    if operation is None:
        return
    check_query_parameters(operation)
    check_body_type(operation)


def init_operation_checks(app: Flask) -> None:
    app.before_request(check_operation)
