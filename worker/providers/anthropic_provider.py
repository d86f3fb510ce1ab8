"""Anthropic (``claude-*``) through the official SDK's Messages API.

``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL`` (default the SDK's). The async client runs on
the SDK's aiohttp transport (see :mod:`worker.providers.openai_compatible`). Retries are off
(``max_retries=0``); ``stop_reason: refusal`` is a non-retryable refusal; 529 / an
``overloaded_error`` is retryable.

Web search is the ``web_search_20250305`` server tool, with the query's country as its
``user_location``. The response then holds the model's preamble ("I'll search for..."),
``server_tool_use`` and ``web_search_tool_result`` blocks (every page retrieved), and the
answer as text blocks whose ``citations`` name the pages cited. The answer is the text after
the last search; the preamble is not part of it. ``max_tokens`` (cut at the cap) fails;
``pause_turn`` (the server paused a long tool loop) is asked again. The SDK is imported on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.settings import Settings
from worker.providers import errors
from worker.providers.base import (
    AiAnswer,
    AiRequest,
    ProviderError,
    Served,
    Source,
    Usage,
    WebSearch,
    attribute,
)
from worker.providers.common import (
    approximate_location,
    connection_limits,
    count,
    distinct,
    fingerprint,
    shared_client,
    system_prompt,
    web_source,
)

if TYPE_CHECKING:
    import anthropic

SEARCH_BLOCKS = frozenset({"server_tool_use", "web_search_tool_result"})


class AnthropicProvider:
    """Claude models (see the module docstring)."""

    name = "anthropic"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api_key = settings.anthropic_api_key
        self.base_url = settings.anthropic_base_url
        self.timeout = settings.provider_timeout_seconds
        self.searches = self.name in settings.web_search_providers

    def _client(self) -> anthropic.AsyncAnthropic:
        def make() -> anthropic.AsyncAnthropic:
            import anthropic

            return anthropic.AsyncAnthropic(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,  # retrying is the worker's job
                http_client=anthropic.DefaultAioHttpClient(
                    timeout=self.timeout, limits=connection_limits(self.settings)
                ),
            )

        key = ("anthropic-sdk", fingerprint(self.api_key), self.base_url or "")
        return shared_client((*key, repr(self.timeout)), make)

    def prepare(self) -> None:
        """Build the client now (see :meth:`AiProvider.prepare`)."""
        self._client()

    async def answer(self, request: AiRequest) -> AiAnswer:
        import anthropic

        if not self.api_key:
            raise ProviderError("anthropic: ANTHROPIC_API_KEY is not set", retryable=False)
        search = WebSearch.ON if self.searches and request.web_search else WebSearch.OFF
        options: dict[str, Any] = {}
        if search is WebSearch.ON:
            options["tools"] = [
                {
                    "type": "web_search_20250305",
                    "name": "web_search",
                    "max_uses": self.settings.web_search_max_uses,
                    "user_location": approximate_location(request),
                }
            ]
        with errors.sdk_errors(self.name, anthropic, self.timeout):
            message = await self._client().messages.create(
                model=request.vendor_model,
                max_tokens=self.settings.max_answer_tokens,
                system=system_prompt(request),
                messages=[{"role": "user", "content": request.query}],
                **options,
            )
        return self.to_answer(message, request, search)

    def to_answer(self, message: Any, request: AiRequest, search: WebSearch) -> AiAnswer:
        """The answer in a Messages response, or the ProviderError it amounts to."""
        from anthropic.types import Message

        if not isinstance(message, Message) or not isinstance(message.content, list):
            raise errors.malformed_body(
                self.name, f"expected a message, got: {str(message)[:120]!r}"
            )
        usage = message.usage
        cache_read = count(attribute(usage, "cache_read_input_tokens"))
        served = Served(
            model=message.model,
            request_id=getattr(message, "_request_id", None) or message.id,
            usage=Usage(
                # Anthropic's input_tokens leaves out what was read from or written to the
                # prompt cache; the total is what was sent.
                input_tokens=count(attribute(usage, "input_tokens"))
                + cache_read
                + count(attribute(usage, "cache_creation_input_tokens")),
                output_tokens=count(attribute(usage, "output_tokens")),
                cached_tokens=cache_read,
                search_calls=count(
                    attribute(attribute(usage, "server_tool_use"), "web_search_requests")
                ),
            ),
        )
        blocks = message.content
        last_search = max(
            (i for i, b in enumerate(blocks) if getattr(b, "type", None) in SEARCH_BLOCKS),
            default=-1,
        )
        texts: list[str] = []
        cited: list[Source | None] = []
        retrieved: list[Source | None] = []
        for index, block in enumerate(blocks):
            kind = getattr(block, "type", None)
            results = attribute(block, "content") if kind == "web_search_tool_result" else None
            if isinstance(results, list):  # else an error object: the search failed
                for result in results:
                    retrieved.append(
                        web_source(attribute(result, "url"), attribute(result, "title"))
                    )
            if kind != "text" or index < last_search:
                continue
            texts.append(str(getattr(block, "text", "") or ""))
            for citation in getattr(block, "citations", None) or []:
                cited.append(web_source(attribute(citation, "url"), attribute(citation, "title")))
        text = "".join(texts).strip()
        if message.stop_reason == "refusal":
            raise errors.refused(self.name, text or "stop_reason refusal")
        if message.stop_reason == "max_tokens":
            raise errors.truncated(self.name, "stop_reason max_tokens", served)
        if message.stop_reason == "pause_turn":
            raise errors.truncated(self.name, "stop_reason pause_turn", served, retryable=True)
        if not text:
            raise errors.empty_answer(self.name, f"stop_reason {message.stop_reason}")
        return AiAnswer(
            text=text,
            provider=self.name,
            model=request.model,
            cited=distinct(cited),
            retrieved=distinct(retrieved),
            served=served,
            web_search=search,
        )
