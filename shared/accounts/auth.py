"""Credentials: hashed API keys, HS256 JWTs, and resolving a request to a principal."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import Unauthenticated
from shared.models import ApiKey, Membership, User, utcnow
from shared.settings import get_settings

API_KEY_PREFIX = "jy_"
JWT_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an organisation, and the user acting (or the key's creator)."""

    organisation_id: uuid.UUID
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None = None


def hash_api_key(raw_key: str) -> str:
    """SHA-256 of a key; keys are 256-bit random, so a fast hash is the right one."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def create_api_key(
    session: Session, organisation_id: uuid.UUID, name: str, created_by: uuid.UUID | None
) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and never stored."""
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        organisation_id=organisation_id,
        name=name,
        prefix=raw[:10],
        key_hash=hash_api_key(raw),
        created_by_user_id=created_by,
    )
    session.add(key)
    session.flush()
    return key, raw


def issue_token(
    user_id: uuid.UUID, organisation_id: uuid.UUID, ttl: timedelta | None = None
) -> str:
    """A signed HS256 JWT: ``sub`` is the user, ``org`` the organisation."""
    settings = get_settings()
    now = utcnow()
    ttl = ttl or timedelta(seconds=settings.jwt_ttl_seconds)
    claims = {
        "sub": str(user_id),
        "org": str(organisation_id),
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(claims, settings.secret_key, algorithm=JWT_ALGORITHM)


def principal_from_api_key(session: Session, raw_key: str) -> Principal:
    """Resolve an ``x-api-key`` to its organisation, or raise Unauthenticated."""
    key = session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(raw_key), ApiKey.revoked_at.is_(None))
    )
    if key is None:
        raise Unauthenticated("Invalid API key")
    return Principal(key.organisation_id, key.created_by_user_id, key.id)


def principal_from_token(session: Session, token: str) -> Principal:
    """Verify a bearer JWT and the user's membership, or raise Unauthenticated."""
    try:
        claims = jwt.decode(
            token,
            get_settings().secret_key,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "org", "exp"]},
        )
        user_id = uuid.UUID(str(claims["sub"]))
        org_id = uuid.UUID(str(claims["org"]))
    except (jwt.PyJWTError, ValueError) as exc:
        raise Unauthenticated("Invalid or expired token") from exc
    member = session.get(Membership, (user_id, org_id))
    if member is None or session.get(User, user_id) is None:
        raise Unauthenticated("Invalid or expired token")
    return Principal(org_id, user_id)


def authenticate(session: Session, *, api_key: str | None, bearer: str | None) -> Principal:
    """Resolve whichever credential was given (an API key wins when both are)."""
    if api_key:
        return principal_from_api_key(session, api_key)
    if bearer:
        return principal_from_token(session, bearer)
    raise Unauthenticated("Missing credentials: send x-api-key or Authorization: Bearer <token>")
