"""What every AI provider takes and gives, and how it reports a failure."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.ai_models import resolve_model


class WebSearch(enum.StrEnum):
    """Whether an answer was grounded in a web search."""

    ON = "on"  # the provider's search tool was offered to the model
    OFF = "off"  # asked for the bare model (a setting, or the project's choice)
    UNAVAILABLE = "unavailable"  # the provider has no search API (DeepSeek)


@dataclass(frozen=True)
class AiRequest:
    """One question for one model, with the context a provider may use."""

    model: str  # the public model id (the Mentionlab enum), as answers show it
    query: str
    language: str
    country: str
    seed: str  # stable per execution: lets the simulation answer deterministically
    attempt: int = 1
    brand_names: tuple[str, ...] = ()  # the project's brands, for the simulation only
    web_search: bool = True  # offer the provider's web search tool, where it has one
    # What answers ``model``: the provider's key and the vendor's name for the model, as
    # resolved once when the execution was planned (shared.ai_models.ResolvedModel).
    # Left empty (a caller without a resolved item), they are resolved here.
    provider: str = ""
    vendor_model: str = ""

    def __post_init__(self) -> None:
        if self.provider and self.vendor_model:
            return
        try:
            resolved = resolve_model(self.model)
        except KeyError:
            return  # an unknown id: the registry refuses it
        object.__setattr__(self, "provider", self.provider or resolved.provider)
        object.__setattr__(self, "vendor_model", self.vendor_model or resolved.vendor_model)


@dataclass(frozen=True)
class Source:
    """A web page behind an answer: ``url`` is the real target (never a redirect host;
    None when only a redirect was given and it could not be resolved), ``domain`` its host
    without ``www.``, ``redirect_url`` the vendor's redirect link when there was one."""

    url: str | None
    domain: str
    title: str | None = None
    redirect_url: str | None = None


@dataclass(frozen=True)
class Usage:
    """What a call consumed, as the vendor reported it (zeros where it did not)."""

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0  # part of output_tokens where the vendor bills them so
    cached_tokens: int = 0  # part of input_tokens read from the prompt cache
    search_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "reasoningTokens": self.reasoning_tokens,
            "cachedTokens": self.cached_tokens,
            "searchCalls": self.search_calls,
        }


@dataclass(frozen=True)
class Served:
    """Who answered a call that reached the vendor: the model version it reports, its
    request id, and the usage billed (also for a call that then failed, e.g. truncated)."""

    model: str | None = None
    request_id: str | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class AiAnswer:
    """A provider's answer: the model's final text only, the sources it cited (in order
    of citation) and every source its search retrieved (in retrieval order)."""

    text: str
    provider: str
    model: str  # the public model id asked for
    cited: list[Source] = field(default_factory=list)
    retrieved: list[Source] = field(default_factory=list)
    served: Served = field(default_factory=Served)
    web_search: WebSearch = WebSearch.OFF
    simulated: bool = False

    @property
    def citations(self) -> list[str]:
        """The cited URLs, in order (redirect links where the target is unknown)."""
        return [s.url or s.redirect_url or "" for s in self.cited]


class ProviderError(Exception):
    """A failed call; ``retryable`` for timeouts, 429, 5xx and overload. ``served`` is set
    when the vendor answered (and billed) before the failure, e.g. a truncated answer."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        served: Served | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.served = served


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


def attribute(value: Any, name: str, default: Any = None) -> Any:
    """``value.name`` for SDK objects and ``value[name]`` for dicts (vendor payloads mix
    both: an SDK type's unknown fields stay plain dicts)."""
    if isinstance(value, dict):
        return value.get(name, default)
    return getattr(value, name, default)
