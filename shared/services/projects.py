"""Projects (brands to watch) and their queries, always scoped to the caller's organisation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from shared.errors import NotFound
from shared.models import Project, Query
from shared.services.auth import Principal

PROJECT_FIELDS = (
    "name",
    "description",
    "website",
    "industry",
    "name_aliases",
    "competitors",
    "llm_providers",
    "execution_count",
    "recurrence",
    "recurrence_status",
)


def create_project(session: Session, principal: Principal, fields: dict[str, Any]) -> Project:
    """Create a project in the caller's organisation."""
    project = Project(
        organisation_id=principal.organisation_id,
        created_by_user_id=principal.user_id,
        **{k: v for k, v in fields.items() if k in PROJECT_FIELDS},
    )
    session.add(project)
    session.flush()
    _schedule(session, project, previous_recurrence="manual", previous_status="active")
    return project


def _schedule(
    session: Session, project: Project, *, previous_recurrence: str, previous_status: str
) -> None:
    """Set the project's next scheduled run (and its cached jobs' status) after a change."""
    # Imported here: the schedules service builds on this module (projects, paging).
    from shared.services.schedules import apply_recurrence

    apply_recurrence(
        session, project, previous_recurrence=previous_recurrence, previous_status=previous_status
    )
    session.flush()


def get_project(session: Session, principal: Principal, project_id: uuid.UUID) -> Project:
    """The caller's project, or NotFound (also for another tenant's project)."""
    project = session.get(Project, project_id)
    if project is None or project.organisation_id != principal.organisation_id:
        raise NotFound(f"Project {project_id} not found")
    return project


def update_project(
    session: Session, principal: Principal, project_id: uuid.UUID, fields: dict[str, Any]
) -> Project:
    """Change the given fields of the caller's project (a new recurrence reschedules it)."""
    project = get_project(session, principal, project_id)
    previous = (project.recurrence, project.recurrence_status)
    for name, value in fields.items():
        if name in PROJECT_FIELDS:
            setattr(project, name, value)
    session.flush()
    _schedule(session, project, previous_recurrence=previous[0], previous_status=previous[1])
    return project


def list_projects(session: Session, principal: Principal) -> list[Project]:
    """Every project of the caller's organisation, newest first."""
    return list(
        session.scalars(
            select(Project)
            .where(Project.organisation_id == principal.organisation_id)
            .order_by(Project.created_at.desc())
        )
    )


def create_queries(session: Session, project: Project, items: list[dict[str, Any]]) -> list[Query]:
    """Add queries to a project."""
    queries = [
        Query(
            project_id=project.id,
            text=item["query"],
            language=item.get("language", "en"),
            # ISO 3166 codes are upper-case; list_queries filters on the upper-cased code.
            country=item.get("country", "US").upper(),
            tag_ids=[str(t) for t in item.get("tag_ids", [])],
        )
        for item in items
    ]
    session.add_all(queries)
    session.flush()
    return queries


def get_query(session: Session, principal: Principal, query_id: uuid.UUID) -> Query:
    """The caller's query, or NotFound."""
    row = session.execute(
        select(Query, Project.organisation_id)
        .join(Project, Project.id == Query.project_id)
        .where(Query.id == query_id)
    ).one_or_none()
    if row is None or row[1] != principal.organisation_id:
        raise NotFound(f"Query {query_id} not found")
    query: Query = row[0]
    return query


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


QUERY_SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    "createdAt": Query.created_at,  # type: ignore[dict-item]
    "updatedAt": Query.updated_at,  # type: ignore[dict-item]
    "query": Query.text,  # type: ignore[dict-item]
    "language": Query.language,  # type: ignore[dict-item]
    "country": Query.country,  # type: ignore[dict-item]
}


def list_queries(
    session: Session,
    project: Project,
    *,
    text: str | None,
    languages: list[str],
    countries: list[str],
    sort: list[tuple[str, str]],
    limit: int,
    page: int,
) -> Page:
    """A project's queries, filtered and sorted, one page at a time."""
    stmt = select(Query).where(Query.project_id == project.id)
    if text:
        stmt = stmt.where(func.lower(Query.text).contains(text.lower(), autoescape=True))
    if languages:
        stmt = stmt.where(func.lower(Query.language).in_([lang.lower() for lang in languages]))
    if countries:
        stmt = stmt.where(Query.country.in_([c.upper() for c in countries]))
    order = [
        QUERY_SORT_COLUMNS[field].desc() if direction == "DESC" else QUERY_SORT_COLUMNS[field].asc()
        for field, direction in sort
    ]
    stmt = stmt.order_by(*order, Query.created_at.desc(), Query.id)
    return paginate(session, stmt, limit, page)
