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
    """A successful answer with ``text``.

    When the request asked for web search (and only then), the fake renders a search in
    its vendor's shape: ``citations`` are the pages the answer cites, ``retrieved`` more
    pages the search found but the answer does not cite, and ``preamble`` what the model
    says before searching (Anthropic and OpenAI models do). A request without the search
    tool gets the bare text: no sources at all.
    """

    text: str = DEFAULT_TEXT
    citations: tuple[str, ...] = ()
    retrieved: tuple[str, ...] = ()
    preamble: str = "I'll search for current information on this."


@dataclass(frozen=True)
class Truncated:
    """The answer stopped early: at the output token cap (``kind="max_tokens"``), or, for
    Anthropic, a server tool loop paused (``kind="pause_turn"``)."""

    text: str = "Acme is often recommended because"
    kind: str = "max_tokens"


@dataclass(frozen=True)
class RateLimited:
    """HTTP 429 with ``Retry-After: <retry_after>`` and/or ``retry-after-ms`` (None: omitted).

    ``window`` is the limit that was hit, ``"minute"`` or ``"day"``: the body says which,
    in the vendor's words (OpenAI's message, Gemini's ``QuotaFailure`` quota id).
    """

    retry_after: str | None = "1"
    retry_after_ms: str | None = None
    message: str = "rate limit exceeded"
    window: str = "minute"


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


Behaviour = (
    Reply | Truncated | RateLimited | Fail | Hang | Malformed | Empty | Refusal | Disconnect | Raw
)
