"""Resolving a request's credentials to a :class:`~shared.accounts.auth.Principal`."""

from __future__ import annotations

from flask import g, request

from shared.accounts.auth import Principal, authenticate
from shared.db import session_scope


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authenticate_request(*api_key_headers: str) -> Principal:
    """Authenticate once per request from an API key header or a bearer JWT (else 401)."""
    cached: Principal | None = g.get("principal")
    if cached is not None:
        return cached
    api_key = next((request.headers[h] for h in api_key_headers if request.headers.get(h)), None)
    with session_scope() as session:
        principal = authenticate(session, api_key=api_key, bearer=bearer_token())
    g.principal = principal
    return principal


def current_principal() -> Principal:
    """The principal :func:`authenticate_request` resolved for this request."""
    principal: Principal = g.principal
    return principal
