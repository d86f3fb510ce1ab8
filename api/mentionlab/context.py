"""The Mentionlab context headers: ``x-organisation-id`` and ``x-project-id``."""

from __future__ import annotations

import re
import uuid

from flask import request

from api.auth import authenticate_request
from api.openapi import UUID_HEADER, UUID_PATTERN, documented_parameters
from shared.accounts.auth import Principal
from shared.errors import InvalidInput, NotFound

# Typed as strings with a UUID pattern, which is what the server checks (_header_uuid):
# a client generated from ``format: uuid`` would send a UUID object as a header value.
ORGANISATION_HEADER = {
    "in": "header",
    "name": "x-organisation-id",
    "required": False,
    "schema": UUID_HEADER,
    "description": "Organisation context (a UUID); must be the caller's organisation",
}
PROJECT_HEADER = {
    "in": "header",
    "name": "x-project-id",
    "required": True,
    "schema": UUID_HEADER,
    "description": "Project context (a UUID); must belong to the organisation",
}
# Decorators of the views: the headers each reads, documented.
context_headers = documented_parameters(ORGANISATION_HEADER)
project_headers = documented_parameters(ORGANISATION_HEADER, PROJECT_HEADER)
listing_headers = documented_parameters(
    ORGANISATION_HEADER,
    {
        **PROJECT_HEADER,
        "required": False,
        "description": "Only the jobs of this project (a UUID of the organisation's)",
    },
)
UUID_TEXT = re.compile(UUID_PATTERN)


def _header_uuid(name: str, *, required: bool) -> uuid.UUID | None:
    raw = request.headers.get(name)
    if raw is None or not raw.strip():
        if required:
            raise InvalidInput(
                f"{name} header is required", details=[f"{name}: header is required"]
            )
        return None
    if not UUID_TEXT.match(raw.strip()):
        raise InvalidInput(f"{name} must be a UUID", details=[f"{name}: must be a UUID"])
    return uuid.UUID(raw.strip())


def authenticate() -> Principal:
    """Authenticate the caller and check the organisation header against its credentials."""
    principal = authenticate_request()
    organisation_id = _header_uuid("x-organisation-id", required=False)
    if organisation_id is not None and organisation_id != principal.organisation_id:
        raise NotFound(f"Organisation {organisation_id} not found")
    return principal


def authenticate_first() -> None:
    """``before_request`` hook of every blueprint of the family (returns nothing, so the
    request goes on to its view)."""
    authenticate()


def project_id_header(*, required: bool = True) -> uuid.UUID | None:
    """The ``x-project-id`` header as a UUID (400 when missing or malformed)."""
    return _header_uuid("x-project-id", required=required)


def required_project_id() -> uuid.UUID:
    project_id = project_id_header(required=True)
    assert project_id is not None
    return project_id
