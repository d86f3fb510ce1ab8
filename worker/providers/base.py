"""What every AI provider takes and gives, and how it reports a failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class AiRequest:
    """One question for one model, with the context a provider may use."""

    model: str
    query: str
    language: str
    country: str
    seed: str  # stable per execution: lets the simulation answer deterministically
    attempt: int = 1
    brand_names: tuple[str, ...] = ()  # the project's brands, for the simulation only


@dataclass(frozen=True)
class AiAnswer:
    """A provider's answer: its text and, where the provider gives them, its citations."""

    text: str
    provider: str
    model: str
    citations: list[str] = field(default_factory=list)
    simulated: bool = False


class ProviderError(Exception):
    """A failed call; ``retryable`` for timeouts, 429, 5xx and overload."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class AiProvider(Protocol):
    """Anything that can answer an :class:`AiRequest`."""

    name: str

    def prepare(self) -> None:
        """Get ready to call at once (import the SDK, build the client).

        The runner calls this before it takes a rate-limit permit, so that the request
        leaves right after the permit is granted: a permit taken long before its call
        would let calls bunch up at the provider beyond the limit.
        """
        ...

    async def answer(self, request: AiRequest) -> AiAnswer:
        """Ask the model (on the worker's event loop: thousands of these are in flight)."""
        ...
