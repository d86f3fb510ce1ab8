"""What a fake vendor server does with one request: the behaviours a test scripts.

Behaviours are vendor-neutral; each fake renders them in its vendor's wire format (a
:class:`Reply` is a chat completion for the OpenAI fake, a message for the Anthropic fake,
and so on). See :mod:`tests.fakes` for how to script them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_TEXT = "Acme is often recommended; Globex is a common alternative."


@dataclass(frozen=True)
class Reply:
    """A successful answer with ``text`` and, where the vendor has them, ``citations``."""

    text: str = DEFAULT_TEXT
    citations: tuple[str, ...] = ()


@dataclass(frozen=True)
class RateLimited:
    """HTTP 429 with ``Retry-After: <retry_after>`` and/or ``retry-after-ms`` (None: omitted)."""

    retry_after: str | None = "1"
    retry_after_ms: str | None = None
    message: str = "rate limit exceeded"


@dataclass(frozen=True)
class Fail:
    """An HTTP error ``status`` with the vendor's error envelope (400, 401, 500, 503, 529...)."""

    status: int = 500
    message: str = "internal error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    """Wait ``seconds`` before answering with ``then`` (a client with a shorter timeout
    gives up first). The wait ends early when the fake stops."""

    seconds: float = 5.0
    then: Any = field(default_factory=Reply)


@dataclass(frozen=True)
class Malformed:
    """HTTP ``status`` (200) whose body is not what the vendor would send (not even JSON)."""

    body: bytes = b'{"choices": [ this is not json'
    status: int = 200
    content_type: str = "application/json"


@dataclass(frozen=True)
class Empty:
    """A well-formed success envelope with no answer in it (no choices / content / parts)."""


@dataclass(frozen=True)
class Refusal:
    """The vendor's own way of declining to answer (a refusal, a safety block...).

    ``kind`` picks a variant where the vendor has several: OpenAI ``"content_filter"``
    (else the ``refusal`` field), Gemini ``"safety"`` (else a blocked prompt).
    """

    message: str = "I'm sorry, but I can't help with that."
    kind: str = ""


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without sending any response."""


@dataclass(frozen=True)
class Raw:
    """Exactly this response: a dict/list body is sent as JSON, bytes as they are."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)


Behaviour = Reply | RateLimited | Fail | Hang | Malformed | Empty | Refusal | Disconnect | Raw
