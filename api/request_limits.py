"""Limits on what one request may hold, checked before any view runs, for every family.

- The URL (the request target as sent: path and query) is at most
  ``JOBYARD_MAX_URL_BYTES`` long, else 414.
- At most ``JOBYARD_MAX_HEADER_COUNT`` header fields, each (name, ``": "`` and value) at
  most ``JOBYARD_MAX_HEADER_BYTES`` long, else 431.
- No NUL character in the path, a query parameter's name or value, or a header's value,
  which could reach PostgreSQL as they are (it cannot store NUL: a 500): 400 with one
  ``path: ...``, ``query.<name>: ...`` or ``headers.<Name>: ...`` line per place.
- A JSON body (``application/json`` or ``application/*+json``) is at most
  ``JOBYARD_MAX_REQUEST_BYTES`` long (413, Werkzeug's ``MAX_CONTENT_LENGTH``), nested at
  most ``JOBYARD_MAX_JSON_DEPTH`` levels deep, holds no number of more than
  ``JOBYARD_MAX_JSON_NUMBER_DIGITS`` digits, no number beyond a double's range (``1e999``)
  and no ``NaN``/``Infinity`` (which are not JSON), else 400. Without these, Python's JSON
  parser and marshmallow answer 500 (RecursionError, the int-string conversion limit),
  and PostgreSQL refuses NaN in a JSON column (500 again). No string in it (a key or a
  value, at any depth) holds a NUL character or half a surrogate pair, which PostgreSQL
  cannot store either (in a JSON column as in a text one): 400 with one
  ``field.path: ...`` line per such string, as a schema's field would say it.

Every answer is in the family's envelope (:mod:`api.errors`), before authentication
(but after the rate limit). A body within the limits is parsed a second time by webargs
(tens of milliseconds for 4 MB), which can then only succeed; a body that is not JSON
at all is a 400 that says where it broke, as the parser does ("Invalid JSON body:
Expecting value at line 1, column 15 (offset 14)"). Array lengths are
each schema's business: every ``fields.List`` of a request schema has a
``Length(max=...)`` (tests/api/test_hostile_input.py checks them all).

gunicorn parses the request line and headers before the app sees them and answers its
own HTML page beyond its limits; ``deploy/gunicorn.conf.py`` sets those above the ones
here, so that within them the client gets the JSON envelope of its family.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import RequestHeaderFieldsTooLarge, RequestURITooLarge

from shared.errors import InvalidInput
from shared.settings import get_settings

CONSTANTS = ("NaN", "Infinity", "-Infinity")


class BodyRejected(InvalidInput):
    """A JSON body over one of the limits (400, the message as its one detail line)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, details=[message])


def request_target() -> str:
    """The request target as the client sent it (``/path?query``), as far as the WSGI
    server tells: gunicorn and Werkzeug give ``RAW_URI``/``REQUEST_URI``."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return str(raw)
    query = environ.get("QUERY_STRING", "")
    return (
        environ.get("SCRIPT_NAME", "")
        + environ.get("PATH_INFO", "")
        + (f"?{query}" if query else "")
    )


def check_url() -> None:
    limit = get_settings().max_url_bytes
    if len(request_target()) > limit:
        raise RequestURITooLarge(f"Request URL longer than {limit} bytes")


def check_headers() -> None:
    settings = get_settings()
    headers = request.headers
    if len(headers) > settings.max_header_count:
        raise RequestHeaderFieldsTooLarge(
            f"More than {settings.max_header_count} request header fields"
        )
    limit = settings.max_header_bytes
    for name, value in headers.items():
        if len(name) + 2 + len(value) > limit:
            shown = name if len(name) <= 64 else name[:64] + "..."
            raise RequestHeaderFieldsTooLarge(f"Request header {shown} longer than {limit} bytes")


def check_text_is_storable() -> None:
    """NUL in the path, a query parameter (its name or a value) or a header value: 400
    naming each place. PostgreSQL cannot store NUL, and a path segment (a Smart DB name),
    a query value or a header (an Idempotency-Key) may go into a query as it is: psycopg's
    DataError, a 500. One check here rather than one per route or field."""
    lines = []
    reason = _unstorable(request.path)
    if reason:
        lines.append(f"path: {reason}")
    for name, value in request.args.items(multi=True):
        reason = _unstorable(name)
        if reason:
            lines.append(f"query: a parameter name: {reason}")
            continue
        reason = _unstorable(value)
        if reason:
            lines.append(f"query.{name}: {reason}")
    for name, value in request.headers.items():
        reason = _unstorable(value)
        if reason:
            lines.append(f"headers.{name}: {reason}")
    if lines:
        unique = list(dict.fromkeys(lines))  # a parameter repeated says so once
        raise InvalidInput("Validation failed: " + "; ".join(unique), details=unique)


def load_json(data: bytes) -> Any:
    """Parse a JSON body within the limits (:class:`BodyRejected` otherwise); a body that
    is not JSON raises what :func:`json.loads` raises (ValueError)."""
    settings = get_settings()
    max_digits, max_depth = settings.max_json_number_digits, settings.max_json_depth

    def too_long(literal: str) -> bool:
        return len(literal) > max_digits and sum(c.isdigit() for c in literal) > max_digits

    def parse_int(literal: str) -> int:
        if too_long(literal):
            raise BodyRejected(f"JSON number with more than {max_digits} digits")
        return int(literal)

    def parse_float(literal: str) -> float:
        if too_long(literal):
            raise BodyRejected(f"JSON number with more than {max_digits} digits")
        number = float(literal)
        if not math.isfinite(number):
            raise BodyRejected(f"JSON number out of range: {literal}")
        return number

    def parse_constant(name: str) -> Any:
        raise BodyRejected(f"{name} is not a JSON value")

    too_deep = f"JSON nested deeper than {max_depth} levels"
    try:
        value = json.loads(
            data.decode("utf-8"),
            parse_int=parse_int,
            parse_float=parse_float,
            parse_constant=parse_constant,
        )
    except RecursionError:  # far deeper than any limit: the parser's own stack ran out
        raise BodyRejected(too_deep) from None
    # Only a body with more opening brackets than the limit can be nested deeper.
    if data.count(b"[") + data.count(b"{") > max_depth and _depth(value, max_depth) > max_depth:
        raise BodyRejected(too_deep)
    # JSON can only carry NUL or a lone surrogate escaped (\u0000, \ud800).
    if b"\\u" in data or b"\\U" in data:
        lines = list(_unstorable_strings(value))
        if lines:
            raise InvalidInput("Validation failed: " + "; ".join(lines), details=lines)
    return value


def _unstorable(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text``, if it cannot."""
    if "\x00" in text:
        return "Must not contain NUL characters."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Not valid Unicode text."
    return None


def _unstorable_strings(value: Any) -> Iterator[str]:
    """``path: reason`` for every string of ``value`` PostgreSQL cannot store (iterative:
    the body may nest as deep as the limit allows)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            reason = _unstorable(node)
            if reason:
                yield f"{path}: {reason}" if path else reason
        elif isinstance(node, dict):
            for key, child in node.items():
                child_path = f"{path}.{key}" if path else str(key)
                reason = _unstorable(key)
                if reason:
                    yield f"{path or 'body'}: a key: {reason}"
                    child_path = path or "body"
                stack.append((child, child_path))
        elif isinstance(node, list):
            stack.extend((child, f"{path}.{i}" if path else str(i)) for i, child in enumerate(node))


def _depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests (a scalar 0, ``[]`` 1), without recursion; counting stops
    just past ``limit``."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > limit:
            break
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def where_json_broke(exc: ValueError) -> str:
    """What the parser said and where, for a body that is not JSON: the line, column and
    offset of a syntax error, the offset of a byte that is not UTF-8."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno} (offset {exc.pos})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
    return str(exc)


def check_json_body() -> None:
    if not request.is_json:
        return
    data = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413
    if not data:
        return
    try:
        load_json(data)
    except ValueError as exc:  # not JSON at all, or not UTF-8
        line = f"Invalid JSON body: {where_json_broke(exc)}"
        raise InvalidInput(line, details=[line]) from None


def check_request() -> None:
    """``before_request`` of the app: URL, then headers, then NUL in either, then a
    JSON body."""
    check_url()
    check_headers()
    check_text_is_storable()
    check_json_body()


def init_request_limits(app: Flask) -> None:
    app.before_request(check_request)
