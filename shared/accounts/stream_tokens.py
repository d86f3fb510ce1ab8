"""Stream tokens: a short-lived credential for one job's progress stream, for browsers.

A browser's ``EventSource`` cannot send headers, and an API key or a user's JWT must never
go in a URL (it lands in logs, history and proxies, and it opens everything). So a holder
of the usual credentials asks for a stream token (``POST /api/jobs/{id}/events/token``)
and hands it to the page, which opens ``GET /api/jobs/{id}/events?token=...``.

The token is an HS256 JWT (PyJWT) that says which job and organisation it is for, and
expires after ``JOBYARD_SSE_TOKEN_TTL_SECONDS`` (5 minutes). It is signed with a key of its
own, derived from ``SECRET_KEY`` for this one purpose, and carries an audience that names
the stream: it is never accepted as a bearer token, and a bearer token is never accepted
as a stream token. It opens that job's stream and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from shared.errors import Unauthenticated
from shared.models import utcnow
from shared.settings import get_settings

AUDIENCE = "jobyard:job-events"
ALGORITHM = "HS256"
# The bad token's answer: the same whatever is wrong with it (forged, expired, another
# job's), so that it tells a guesser nothing.
INVALID = "Invalid or expired stream token: ask POST /api/jobs/{id}/events/token for a new one"


@dataclass(frozen=True)
class StreamToken:
    """An issued token and when it stops opening the stream."""

    token: str
    expires_at: datetime


def _signing_key() -> bytes:
    """A key for stream tokens only: SECRET_KEY itself signs bearer JWTs."""
    secret = get_settings().secret_key.encode()
    return hmac.new(secret, b"jobyard stream tokens v1", hashlib.sha256).digest()


def issue_stream_token(
    organisation_id: uuid.UUID, job_id: uuid.UUID, user_id: uuid.UUID | None
) -> StreamToken:
    """A token that opens ``job_id``'s progress stream for the organisation, for the
    configured few minutes (the caller has checked that the job is the organisation's)."""
    now = utcnow().replace(microsecond=0)
    expires_at = now + timedelta(seconds=get_settings().sse_token_ttl_seconds)
    claims: dict[str, object] = {
        "aud": AUDIENCE,
        "job": str(job_id),
        "org": str(organisation_id),
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    if user_id is not None:
        claims["by"] = str(user_id)  # who asked: for the logs, it grants nothing
    return StreamToken(jwt.encode(claims, _signing_key(), algorithm=ALGORITHM), expires_at)


def verify_stream_token(token: str, job_id: uuid.UUID) -> uuid.UUID:
    """The organisation ``token`` opens ``job_id``'s stream for; else Unauthenticated."""
    try:
        claims = jwt.decode(
            token,
            _signing_key(),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["aud", "job", "org", "exp"]},
        )
        token_job = uuid.UUID(str(claims["job"]))
        organisation_id = uuid.UUID(str(claims["org"]))
    except (jwt.PyJWTError, ValueError) as exc:
        raise Unauthenticated(INVALID) from exc
    if token_job != job_id:
        raise Unauthenticated(INVALID)
    return organisation_id
