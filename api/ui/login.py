"""Who is looking at the dashboard: logging in with an API key or a user's token, the
session that remembers it, and checking that again on every request.

The session (Flask's signed cookie: readable by its holder, not forgeable) keeps what to
check, never the credential itself: the API key's id, or the user and the token's expiry.
Every request reads that key (not revoked, still the organisation's) or that membership
(the user still in the organisation, the token not expired) again, so revoking the key or
removing the member ends the session at its next click.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from flask import session
from sqlalchemy.orm import Session

from shared.accounts.auth import (
    API_KEY_PREFIX,
    Principal,
    principal_from_api_key,
    principal_from_token,
)
from shared.errors import Unauthenticated
from shared.models import ApiKey, Membership, Organisation, User, utcnow

SESSION_KEY = "jobyard"
VIA_API_KEY = "api_key"
VIA_TOKEN = "token"


@dataclass(frozen=True)
class Visitor:
    """The logged-in organisation (and how), as every page shows it."""

    principal: Principal
    organisation_name: str
    via: str


def log_in(db: Session, credential: str) -> Principal:
    """Check ``credential`` (an API key, ``jy_...``, or a user's bearer token) and start a
    new session for its organisation; Unauthenticated when it opens nothing."""
    credential = credential.strip()
    if not credential:
        raise Unauthenticated("Enter an API key or a token")
    if credential.startswith(API_KEY_PREFIX):
        principal = principal_from_api_key(db, credential)
        saved: dict[str, Any] = {"via": VIA_API_KEY, "key": str(principal.api_key_id)}
    else:
        principal = principal_from_token(db, credential)
        # Verified just above; read again only for its expiry, which the session keeps.
        claims = jwt.decode(credential, options={"verify_signature": False})
        saved = {"via": VIA_TOKEN, "user": str(principal.user_id), "exp": int(claims["exp"])}
    session.clear()  # a fresh session (and CSRF token): nothing carried over from before
    session.permanent = True
    session[SESSION_KEY] = {"org": str(principal.organisation_id), **saved}
    return principal


def log_out() -> None:
    session.clear()


def visitor(db: Session) -> Visitor | None:
    """The session's organisation, checked again now; None (and the session ended) when
    there is none or what it names no longer opens it."""
    saved = session.get(SESSION_KEY)
    principal = _still_valid(db, saved) if isinstance(saved, dict) else None
    if principal is None:
        if saved is not None:
            session.clear()
        return None
    organisation = db.get(Organisation, principal.organisation_id)
    if organisation is None:
        session.clear()
        return None
    return Visitor(principal, organisation.name, str(saved["via"]))  # type: ignore[index]


def _still_valid(db: Session, saved: dict[str, Any]) -> Principal | None:
    try:
        organisation_id = uuid.UUID(str(saved["org"]))
        if saved.get("via") == VIA_API_KEY:
            key = db.get(ApiKey, uuid.UUID(str(saved["key"])))
            if key is None or key.revoked_at is not None or key.organisation_id != organisation_id:
                return None
            return Principal(organisation_id, key.created_by_user_id, key.id)
        if saved.get("via") == VIA_TOKEN:
            user_id = uuid.UUID(str(saved["user"]))
            expires = datetime.fromtimestamp(int(saved["exp"]), UTC)
            if expires <= utcnow():
                return None
            if db.get(Membership, (user_id, organisation_id)) is None:
                return None
            if db.get(User, user_id) is None:
                return None
            return Principal(organisation_id, user_id)
    except (KeyError, TypeError, ValueError):
        return None
    return None
