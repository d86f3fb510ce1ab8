"""What every family's OpenAPI spec says about errors, written once for all families.

Each family's spec documents the answers its operations actually give (schemathesis checks
them in tests/api/test_schemathesis.py):

- every error in the family's own envelope schema (``Family.error_schema``); no catch-all
  ``default`` response, so an undocumented status is a failure of the spec;
- 400 for a request that fails validation, where flask-smorest would document 422
  (:func:`api.errors.handle_http_exception` answers webargs' failures with 400);
- the answers of the checks every request goes through, on every operation: 400 (a
  malformed JSON body or context header), 401 (no or bad credentials), 414 and 431
  (:mod:`api.request_limits`), 429 (:mod:`api.rate_limits`); 408 and 413 where there
  is a body (:mod:`api.request_body`), and 415 for one that is not JSON
  (:mod:`api.operations`);
  404 where the path or a context header names something that may not exist (or may be
  another organisation's); 503 with ``Retry-After`` when the database cannot be reached
  (:func:`api.errors.handle_database_unavailable`).

A view documents its own other answers (409, 422, 502, or 429 for a quota) with
``@blp.alt_response(status, description=...)``: the envelope schema is added here.

Every string a request carries says that it holds no NUL (:data:`NO_NUL`, where it has no
pattern, format or enum of its own): marshmallow fields through :func:`no_nul`, path and
hand-written parameters through the plugin.

What the specs say must be what clients generated from them can use (openapi-python-client:
tests/e2e/test_generated_clients.py):

- an answer's fields are ``required`` where every answer has them (:class:`Answer`), and
  ``nullable`` where they may be null: a nullable object is ``{allOf: [$ref], nullable}``
  (:func:`nullable_reference`), which generators read as "that object or null";
- ids in headers are strings with a UUID ``pattern`` (:data:`UUID_HEADER`), not ``format:
  uuid``: a generated client would pass a ``UUID`` object to its HTTP library as a header
  value, which refuses it;
- parameters read by hand (headers) are documented with :func:`documented_parameters`,
  beside those of the view's schemas (``@blp.doc(parameters=...)`` would replace them).
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from http import HTTPStatus
from typing import Any, ClassVar, TypeVar

from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema
from marshmallow.fields import Field

# Headers that name an organisation's resource (Mentionlab's context headers).
RESOURCE_HEADERS = ("x-organisation-id", "x-project-id")
# flask-smorest's reference for the validation answer it documents (422).
SMOREST_VALIDATION = HTTPStatus.UNPROCESSABLE_ENTITY.name
EVERY_OPERATION = (400, 401, 414, 429, 431)
# A UUID as a header carries it: the canonical 8-4-4-4-12 hex digits, either case.
UUID_PATTERN = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
UUID_HEADER = {"type": "string", "pattern": UUID_PATTERN}

View = TypeVar("View", bound=Callable[..., Any])


class Answer(Schema):
    """The shape of an answer (or of an object in one): every field is in every answer,
    so the spec lists each as ``required``, but those named in ``optional`` (which some
    answers leave out). A field that may be null says so (``allow_none`` or a
    ``nullable`` in its metadata): required is about the key, not its value."""

    optional: ClassVar[frozenset[str]] = frozenset()

    def on_bind_field(self, field_name: str, field_obj: Field) -> None:
        # Dumping ignores ``required``; apispec reads it from the bound fields.
        field_obj.required = (field_obj.data_key or field_name) not in self.optional


def documented_parameters(*parameters: dict[str, Any]) -> Callable[[View], View]:
    """Document parameters a view reads by hand (headers), beside those its
    ``@blp.arguments`` schemas document: flask-smorest's ``@blp.doc(parameters=...)``
    replaces that list, which left the query parameters of every Mentionlab list out of
    its spec. (flask-smorest documents the entries of ``_apidoc["arguments"]`` first and
    keeps an entry that is already a parameter as it is.)"""

    def decorate(view: View) -> View:
        apidoc = deepcopy(getattr(view, "_apidoc", {}))
        documented = apidoc.setdefault("arguments", {}).setdefault("parameters", [])
        documented.extend(deepcopy(parameters))
        view._apidoc = apidoc  # type: ignore[attr-defined]
        return view

    return decorate


def nullable_reference(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """An apispec attribute function: a nested object that may be null documents as
    ``{allOf: [$ref], nullable: true}`` rather than apispec's ``anyOf`` of the object and
    an empty nullable object, which a generated client reads as "any object" (so it never
    gets the nested model)."""
    null = {"type": "object", "nullable": True}
    choices = ret.get("anyOf")
    if isinstance(choices, list) and len(choices) == 2 and null in choices:
        del ret["anyOf"]
        return {"allOf": [c for c in choices if c != null], "nullable": True}
    return {}


def available_choices(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """An apispec attribute function: a field whose ``metadata["available_choices"]`` is a
    callable documents as its ``enum`` what that returns when the spec is built (what
    this deployment offers, e.g. the embedders it has keys for), rather than every value
    its validator knows (the others are a 400 saying what is missing)."""
    choices = field.metadata.get("available_choices")
    return {"enum": list(choices())} if callable(choices) else {}


# Every string the API takes holds no NUL (api/request_limits.py refuses it anywhere in a
# request: PostgreSQL cannot store it). Said as a pattern where a string has no pattern,
# format or enum of its own (which exclude NUL already).
NO_NUL = "^[^\\x00]*$"


def _is_plain_string(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    is_string = kind == "string" or (isinstance(kind, list) and "string" in kind)
    return is_string and not {"pattern", "format", "enum"} & set(schema)


def no_nul(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """An apispec attribute function: a string field documents that it holds no NUL."""
    return {"pattern": NO_NUL} if _is_plain_string(ret) else {}


class FamilyFields(MarshmallowPlugin):
    """The marshmallow plugin of every family's spec: fields documented with the attribute
    functions above, from the first schema on (the error envelope is documented when the
    spec is made, before an ``Api`` could be given them)."""

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        for attribute_function in (available_choices, no_nul, nullable_reference):
            self.converter.add_attribute_function(attribute_function)  # type: ignore[union-attr]


def _status(code: Any) -> int | None:
    try:
        return int(code)
    except (TypeError, ValueError):  # "default", "2XX"
        return None


class FamilyResponses(BasePlugin):
    """An apispec plugin (one per family's spec) that documents the answers above.

    ``error_schema`` is the name of the family's envelope schema among the spec's
    components; the spec's ``<STATUS_NAME>`` responses (flask-smorest registers one per
    status) use it too.
    """

    def __init__(self, error_schema: str) -> None:
        self.error_schema = error_schema
        self.spec: APISpec | None = None

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        self.spec = spec

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            self.body_is_optional(operation)
            self.document_errors(path or "", operation)
            self.parameters_hold_no_nul(operation)

    def path_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        parameters: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.hold_no_nul(parameters or [])

    def parameters_hold_no_nul(self, operation: dict[str, Any]) -> None:
        self.hold_no_nul(operation.get("parameters", []))

    @staticmethod
    def hold_no_nul(parameters: list[Any]) -> None:
        """Path parameters (from the URL map's converters) and parameters documented by
        hand say what :func:`no_nul` says of fields."""
        for parameter in parameters:
            schema = parameter.get("schema") if isinstance(parameter, dict) else None
            if isinstance(schema, dict) and _is_plain_string(schema):
                schema["pattern"] = NO_NUL

    def body_is_optional(self, operation: dict[str, Any]) -> None:
        """A JSON body whose schema requires no field may be left out: webargs reads a
        missing body as ``{}``, so the spec must not call it required."""
        body = operation.get("requestBody")
        if not isinstance(body, dict) or self.spec is None:
            return
        schema = body.get("content", {}).get("application/json", {}).get("schema")
        ref = schema.get("$ref", "") if isinstance(schema, dict) else ""
        component = self.spec.components.schemas.get(ref.rsplit("/", 1)[-1])
        if component is not None and not component.get("required"):
            body["required"] = False

    def document_errors(self, path: str, operation: dict[str, Any]) -> None:
        responses: dict[Any, Any] = operation.setdefault("responses", {})
        documented: dict[str, Any] = {}
        for code, response in responses.items():
            status = _status(code)
            if response == SMOREST_VALIDATION and status == 422:
                continue  # validation answers 400, added below
            if status is not None and status >= 400 and isinstance(response, dict):
                # An answer documented with examples only (api/idempotency.py) gets the
                # envelope schema beside them.
                media = response.setdefault("content", {}).setdefault("application/json", {})
                media.setdefault("schema", self.error_schema)
            documented[str(code)] = response
        wanted = list(EVERY_OPERATION)
        if "requestBody" in operation:
            wanted += [408, 413, 415]
        headers = {
            p.get("name", "").lower()
            for p in operation.get("parameters", [])
            if isinstance(p, dict) and p.get("in") == "header"
        }
        if "{" in path or headers & set(RESOURCE_HEADERS):
            wanted.append(404)
        for status in wanted:
            documented.setdefault(str(status), HTTPStatus(status).name)
        documented.setdefault("503", self.unavailable())
        operation["responses"] = dict(sorted(documented.items()))

    def unavailable(self) -> dict[str, Any]:
        return {
            "description": "The database cannot be reached right now: retry after "
            "Retry-After seconds",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
            "content": {"application/json": {"schema": self.error_schema}},
        }
