"""Paging: by offset (one page of a statement's rows and the count behind it), and by
keyset cursor (pages that stay put while rows are being added)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from shared import instants
from shared.errors import InvalidInput


@dataclass(frozen=True)
class Page:
    """One page of results and the total count behind it."""

    items: list[Any]
    total: int
    limit: int
    page: int


def paginate(session: Session, stmt: Select[Any], limit: int, page: int) -> Page:
    """Run ``stmt`` for one page (1-based) and count all of its rows."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(session.scalars(stmt.limit(limit).offset((page - 1) * limit)))
    return Page(items, total, limit, page)


# -- keyset (cursor) paging ------------------------------------------------------------
#
# A cursor names the last row of a page by (sort value, id); the next page starts strictly
# after it in the same order. Rows created while a client pages do not shift the pages as
# offsets would: nothing is skipped or repeated among the rows that existed when it began.


@dataclass(frozen=True)
class KeysetPage:
    """One page of rows, and the cursor to the next page (None at the end)."""

    items: list[Any]
    next_cursor: str | None


def encode_cursor(sort: str, descending: bool, value: Any, row_id: uuid.UUID) -> str:
    """An opaque, URL-safe token for the position after (``value``, ``row_id``)."""
    if isinstance(value, datetime):
        value = {"t": value.astimezone(UTC).isoformat()}
    payload = {"s": sort, "d": descending, "v": value, "id": str(row_id)}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def decode_cursor(
    token: str,
    sort: str,
    descending: bool,
    value_type: type,
    *,
    parameter: str = "lastEvaluatedKey",
) -> tuple[Any, uuid.UUID]:
    """The (sort value, id) ``token`` names; InvalidInput (naming ``parameter``) when it is
    not one of ours, was made for another order than the one asked for now, or holds a
    sort value that is not a ``value_type`` the database can compare (a cursor is only
    base64 of JSON: a forged one may hold a time out of range, a NUL, or a number where a
    time belongs)."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if payload["s"] != sort or payload["d"] != descending:
            raise InvalidInput(
                f"{parameter} belongs to another sort order: page with the same "
                "sortBy and sortOrder, or start again without it"
            )
        value = _sort_value(payload["v"], value_type)
        if not isinstance(payload["id"], str):
            raise TypeError(f"not an id: {payload['id']!r}")
        return value, uuid.UUID(payload["id"])
    except InvalidInput:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{parameter} is not a cursor from a previous answer") from exc


def _sort_value(value: Any, value_type: type) -> Any:
    """A cursor's sort value as ``value_type`` (TypeError or ValueError when it is not)."""
    if value_type is datetime:
        if not isinstance(value, dict) or not isinstance(value.get("t"), str):
            raise TypeError(f"not a time: {value!r}")
        return instants.parse_iso(value["t"])  # OutOfRange is a ValueError
    if isinstance(value, dict | bool) or not isinstance(value, value_type):
        raise TypeError(f"not a {value_type.__name__}: {value!r}")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a NUL character")
        value.encode("utf-8")  # half a surrogate pair: UnicodeEncodeError, a ValueError
    return value


def keyset_page(
    session: Session,
    stmt: Select[Any],
    *,
    sort: str,
    column: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[Any],
    descending: bool,
    cursor: str | None,
    limit: int,
    parameter: str = "lastEvaluatedKey",
) -> KeysetPage:
    """One page of ``stmt`` ordered by (``column``, ``id_column``), after ``cursor`` (the
    query parameter called ``parameter``, as errors name it)."""
    if cursor:
        value, row_id = decode_cursor(
            cursor, sort, descending, column.type.python_type, parameter=parameter
        )
        after = tuple_(column, id_column)
        stmt = stmt.where(after < (value, row_id) if descending else after > (value, row_id))
    order = (column.desc(), id_column.desc()) if descending else (column.asc(), id_column.asc())
    rows = list(session.scalars(stmt.order_by(*order).limit(limit + 1)))
    items = rows[:limit]
    if len(rows) <= limit:
        return KeysetPage(items, None)
    last = items[-1]
    key = getattr(last, column.key)
    return KeysetPage(items, encode_cursor(sort, descending, key, last.id))
