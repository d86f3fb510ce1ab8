"""Projects (brands to watch) and their queries, always scoped to the caller's organisation."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from shared.accounts.auth import Principal
from shared.errors import NotFound
from shared.mentionlab.models import Project, Query
from shared.mentionlab.recurrence import apply_recurrence
from shared.paging import Page, paginate
from shared.scoping import get_owned

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
    "web_search",
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
    apply_recurrence(
        session, project, previous_recurrence=previous_recurrence, previous_status=previous_status
    )
    session.flush()


def get_project(session: Session, principal: Principal, project_id: uuid.UUID) -> Project:
    """The caller's project, or NotFound (also for another tenant's project)."""
    return get_owned(session, Project, project_id, principal.organisation_id, "Project")


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
