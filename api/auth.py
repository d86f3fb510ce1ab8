"""Resolving a request's credentials to a :class:`~shared.accounts.auth.Principal`."""

from __future__ import annotations

from flask import g, request

from api.families import Family, current_family, sharing
from shared import logs
from shared.accounts.auth import Principal, authenticate
from shared.db import session_scope
from shared.errors import Unauthenticated
from shared.sqlite import reads_only


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def missing_credentials(family: Family | None) -> Unauthenticated:
    """The 401 for a request without credentials: it names the family's own ways in (on
    a path families share, each family's, the one that tells it apart)."""
    shared = sharing(request.path)
    if family is None and shared is not None:
        ways = [f"{' or '.join(f.api_key_headers)} ({f.vendor})" for f in shared.keyed]
        if shared.owner is not None and shared.owner.accepts_bearer:
            ways.append(f"Authorization: Bearer <token> ({shared.owner.vendor})")
        return Unauthenticated("Missing credentials: send " + " or ".join(ways))
    hint = family.credentials_hint() if family else "x-api-key or Authorization: Bearer <token>"
    return Unauthenticated(f"Missing credentials: send {hint}")


def authenticate_request() -> Principal:
    """Authenticate once per request with the credentials the request's family accepts
    (its API key headers, a bearer JWT if it takes one); else 401."""
    cached: Principal | None = g.get("principal")
    if cached is not None:
        return cached
    family = current_family()
    headers = family.api_key_headers if family else ()
    api_key = next((request.headers[h] for h in headers if request.headers.get(h)), None)
    takes_bearer = family.accepts_bearer if family else sharing(request.path) is None
    bearer = bearer_token() if takes_bearer else None
    if api_key is None and bearer is None:
        raise missing_credentials(family)
    # A read of its own, before the request's unit of work: that one connects at the
    # command's first statement, so a command that calls out first (a source database's
    # connection check) holds no connection of ours meanwhile (api/transaction.py).
    with reads_only(), session_scope() as session:
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
