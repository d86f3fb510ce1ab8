"""Request parameters every family reads the same way."""

from __future__ import annotations

import uuid

from shared.errors import NotFound


def path_uuid(raw: str, what: str) -> uuid.UUID:
    """A path id; an id that is not a UUID cannot exist, so it is a 404."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"{what} {raw} not found") from None
