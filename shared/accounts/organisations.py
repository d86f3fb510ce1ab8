"""Creating tenants and people (used by the admin CLI and the demo seed)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import Conflict, NotFound
from shared.models import Membership, Organisation, User
from shared.webhooks.secrets import ensure_current


def create_organisation(session: Session, name: str) -> Organisation:
    """Create an organisation, with the secret that signs its callbacks from the start."""
    org = Organisation(name=name)
    session.add(org)
    session.flush()
    ensure_current(session, [org.id])
    return org


def create_user(
    session: Session,
    email: str,
    first_name: str = "",
    last_name: str = "",
    organisation_id: uuid.UUID | None = None,
    role: str = "member",
) -> User:
    """Create a user, optionally as a member of an organisation."""
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise Conflict(f"A user with email {email} already exists")
    user = User(email=email, first_name=first_name, last_name=last_name)
    session.add(user)
    session.flush()
    if organisation_id is not None:
        add_member(session, organisation_id, user.id, role)
    return user


def add_member(
    session: Session, organisation_id: uuid.UUID, user_id: uuid.UUID, role: str = "member"
) -> None:
    """Make a user a member of an organisation."""
    if session.get(Organisation, organisation_id) is None:
        raise NotFound(f"Organisation {organisation_id} not found")
    if session.get(Membership, (user_id, organisation_id)) is None:
        session.add(Membership(user_id=user_id, organisation_id=organisation_id, role=role))
        session.flush()
