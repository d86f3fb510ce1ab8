"""Offset paging: one page of a statement's rows and the count behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


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
