"""Resolving a request's credentials to a :class:`~shared.accounts.auth.Principal`."""

from __future__ import annotations

from flask import g, request

from api.families import current_family
from shared import logs
from shared.accounts.auth import Principal, authenticate
from shared.db import session_scope


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authenticate_request() -> Principal:
    """Authenticate once per request with the credentials the request's family accepts
    (its API key headers, a bearer JWT if it takes one); else 401."""
    cached: Principal | None = g.get("principal")
    if cached is not None:
        return cached
    family = current_family()
    headers = family.api_key_headers if family else ()
    api_key = next((request.headers[h] for h in headers if request.headers.get(h)), None)
    bearer = bearer_token() if family is None or family.accepts_bearer else None
    with session_scope() as session:
        principal = authenticate(session, api_key=api_key, bearer=bearer)
    use_principal(principal)
    return principal


def has_credentials() -> bool:
    """Whether the request carries a credential its family takes (in its headers)."""
    family = current_family()
    headers = family.api_key_headers if family else ()
    takes_bearer = family is None or family.accepts_bearer
    return any(request.headers.get(h) for h in headers) or (takes_bearer and bool(bearer_token()))


def use_principal(principal: Principal) -> None:
    """Make ``principal`` this request's caller (also for one resolved another way than
    from the headers: a stream token)."""
    g.principal = principal
    logs.bind(organisation_id=principal.organisation_id)


def current_principal() -> Principal:
    """The principal :func:`authenticate_request` resolved for this request."""
    principal: Principal = g.principal
    return principal
