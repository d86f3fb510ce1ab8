"""Domain exceptions raised by the services; each API family maps them to its envelope."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller can be told about."""

    http_status = 400
    # Seconds after which the same request may succeed (the answer's ``Retry-After``), for
    # the errors that are about now, not about the request.
    retry_after: int | None = None

    def __init__(
        self, message: str, *, details: list[str] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.code = code  # a family's own error code (Smart DB's INVALID_TABLE...), if any


class InvalidInput(DomainError):
    """The request is malformed: a field is missing, of the wrong type or out of range."""

    http_status = 400


class Unauthenticated(DomainError):
    """No credentials, or credentials that do not identify anybody."""

    http_status = 401


class NotFound(DomainError):
    """The resource does not exist, or belongs to another tenant (never 403)."""

    http_status = 404


class Conflict(DomainError):
    """The request collides with the current state (a duplicate name, a finished job)."""

    http_status = 409


class Unprocessable(DomainError):
    """Well-formed, but cannot be carried out as asked (no queries, unconfigured provider)."""

    http_status = 422


class UpstreamFailed(DomainError):
    """A service the request depends on failed (an embeddings endpoint refused or did not
    answer): the request itself was fine and may succeed later."""

    http_status = 502


class Unavailable(DomainError):
    """The service cannot take this request now (the database cannot be reached, every
    live-progress stream slot of the process is taken); the same request may succeed
    after ``retry_after`` seconds (the answer's ``Retry-After``)."""

    http_status = 503

    def __init__(
        self,
        message: str,
        *,
        retry_after: int = 5,
        details: list[str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, details=details, code=code)
        self.retry_after = retry_after
