"""Anthropic (``claude-*``) through the official SDK's Messages API.

``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL`` (default the SDK's). The async client runs on
the SDK's aiohttp transport (see :mod:`worker.providers.openai_compatible`). Retries are off
(``max_retries=0``); ``stop_reason: refusal`` is a non-retryable refusal; 529 / an
``overloaded_error`` is retryable. Citations come from the text blocks' ``citations``
(present when a search tool or cited documents were involved). The SDK is imported on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.settings import Settings
from worker.providers import errors
from worker.providers.base import AiAnswer, AiRequest, ProviderError
from worker.providers.common import (
    connection_limits,
    fingerprint,
    shared_client,
    system_prompt,
    unique_urls,
)

if TYPE_CHECKING:
    import anthropic

# Model ids of the trigger enum → Anthropic's model names (unlisted ids are sent as-is).
API_MODEL_NAMES: dict[str, str] = {"claude-haiku-4-5": "claude-haiku-4-5"}

# The Messages API requires a cap on the answer's length; generous for a chat answer.
MAX_ANSWER_TOKENS = 4096


class AnthropicProvider:
    """Claude models (see the module docstring)."""

    name = "anthropic"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api_key = settings.anthropic_api_key
        self.base_url = settings.anthropic_base_url
        self.timeout = settings.provider_timeout_seconds

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
        client = self._client()
        with errors.sdk_errors(self.name, anthropic, self.timeout):
            message = await client.messages.create(
                model=API_MODEL_NAMES.get(request.model, request.model),
                max_tokens=MAX_ANSWER_TOKENS,
                system=system_prompt(request),
                messages=[{"role": "user", "content": request.query}],
            )
        return self.to_answer(message, request)

    def to_answer(self, message: Any, request: AiRequest) -> AiAnswer:
        """The answer in a Messages response, or the ProviderError it amounts to."""
        from anthropic.types import Message

        if not isinstance(message, Message) or not isinstance(message.content, list):
            raise errors.malformed_body(
                self.name, f"expected a message, got: {str(message)[:120]!r}"
            )
        texts: list[str] = []
        urls: list[Any] = []
        for block in message.content:
            if getattr(block, "type", None) != "text":
                continue
            texts.append(str(getattr(block, "text", "") or ""))
            for citation in getattr(block, "citations", None) or []:
                urls.append(getattr(citation, "url", None))
        text = "".join(texts)
        if message.stop_reason == "refusal":
            raise errors.refused(self.name, text or "stop_reason refusal")
        if not text.strip():
            raise errors.empty_answer(self.name, f"stop_reason {message.stop_reason}")
        return AiAnswer(
            text=text, provider=self.name, model=request.model, citations=unique_urls(urls)
        )
