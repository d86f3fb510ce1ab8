"""OpenAI, Perplexity and DeepSeek: one Chat Completions implementation on the OpenAI SDK.

* **OpenAI** (``gpt-*``, ``chat-latest``): ``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` (default
  the SDK's, ``https://api.openai.com/v1``). Citations: the message's ``url_citation``
  annotations (search-enabled models only).
* **Perplexity** (``sonar``): ``PERPLEXITY_API_KEY``, ``PERPLEXITY_BASE_URL`` (default
  ``https://api.perplexity.ai``). Citations: the response's top-level ``citations`` and
  ``search_results[].url``. The country also goes to Perplexity's web search as
  ``web_search_options.user_location.country``.
* **DeepSeek** (``deepseek-v3.2-maas``): ``DEEPSEEK_API_KEY`` and ``DEEPSEEK_BASE_URL``,
  which is required (the "-maas" model is served by OpenAI-compatible gateways such as
  Vertex AI Model-as-a-Service, not by one well-known URL).

The SDK's async client runs on its aiohttp transport (``DefaultAioHttpClient``): on the
default httpx transport a process spends ~3x the CPU per call once a thousand calls are in
flight (``tests/bench/concurrency.py``). The SDK's retries are off (``max_retries=0``):
retrying is the worker's job. The SDK is imported on first use, so a worker that never
calls these vendors does not pay for it.
"""

from __future__ import annotations

import re
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
    import openai

# Model ids of the trigger enum → the model name each vendor's API takes. Ids not listed
# are sent as they are.
API_MODEL_NAMES: dict[str, str] = {
    # OpenAI: the gpt-* ids are OpenAI's own model names.
    "gpt-4.1-mini": "gpt-4.1-mini",
    "gpt-5-mini": "gpt-5-mini",
    "gpt-5-chat-latest": "gpt-5-chat-latest",
    "gpt-5.1-chat-latest": "gpt-5.1-chat-latest",
    "gpt-5.2-chat-latest": "gpt-5.2-chat-latest",
    "gpt-5.3-chat-latest": "gpt-5.3-chat-latest",
    "chat-latest": "chatgpt-4o-latest",  # the model behind ChatGPT
    # Perplexity
    "sonar": "sonar",
    # DeepSeek V3.2 on Vertex AI Model-as-a-Service, whose OpenAI-compatible endpoint names
    # models "<publisher>/<model>".
    "deepseek-v3.2-maas": "deepseek-ai/deepseek-v3.2-maas",
}


def api_model_name(model: str) -> str:
    """The name the vendor's API knows ``model`` by."""
    return API_MODEL_NAMES.get(model, model)


class OpenAICompatibleProvider:
    """A Chat Completions vendor reached through the OpenAI SDK (see the module docstring)."""

    name = "openai"
    key_setting = "OPENAI_API_KEY"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api_key = settings.openai_api_key
        self.base_url: str | None = settings.openai_base_url
        self.timeout = settings.provider_timeout_seconds

    def _client(self) -> openai.AsyncOpenAI:
        def make() -> openai.AsyncOpenAI:
            import openai

            return openai.AsyncOpenAI(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,  # retrying is the worker's job
                http_client=openai.DefaultAioHttpClient(
                    timeout=self.timeout, limits=connection_limits(self.settings)
                ),
            )

        key = ("openai-sdk", self.name, fingerprint(self.api_key), self.base_url or "")
        return shared_client((*key, repr(self.timeout)), make)

    def _check_configured(self) -> None:
        if not self.api_key:
            raise ProviderError(f"{self.name}: {self.key_setting} is not set", retryable=False)

    def extra_body(self, request: AiRequest) -> dict[str, Any] | None:
        """Vendor-specific request fields."""
        return None

    def prepare(self) -> None:
        """Build the client now (see :meth:`AiProvider.prepare`)."""
        self._check_configured()
        self._client()

    async def answer(self, request: AiRequest) -> AiAnswer:
        import openai

        self._check_configured()
        client = self._client()
        with errors.sdk_errors(self.name, openai, self.timeout):
            completion = await client.chat.completions.create(
                model=api_model_name(request.model),
                messages=[
                    {"role": "system", "content": system_prompt(request)},
                    {"role": "user", "content": request.query},
                ],
                extra_body=self.extra_body(request),
            )
        return self.to_answer(completion, request)

    def to_answer(self, completion: Any, request: AiRequest) -> AiAnswer:
        """The answer in a chat completion, or the ProviderError it amounts to."""
        from openai.types.chat import ChatCompletion

        if not isinstance(completion, ChatCompletion):
            # The SDK hands back the raw text of a 2xx that is not application/json.
            raise errors.malformed_body(
                self.name, f"expected a chat completion, got: {str(completion)[:120]!r}"
            )
        choices = completion.choices
        if not isinstance(choices, list):
            raise errors.malformed_body(self.name, "no 'choices' in the chat completion")
        if not choices:
            raise errors.empty_answer(self.name, "no choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        if message is None:
            raise errors.malformed_body(self.name, "a choice without a message")
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise errors.refused(self.name, str(refusal))
        if choice.finish_reason == "content_filter":
            raise errors.refused(self.name, "stopped by the content filter")
        text = message.content if isinstance(message.content, str) else ""
        if not text.strip():
            raise errors.empty_answer(self.name, f"finish_reason {choice.finish_reason}")
        return AiAnswer(
            text=text,
            provider=self.name,
            model=request.model,
            citations=self.citations(completion),
        )

    @staticmethod
    def citations(completion: Any) -> list[str]:
        """Perplexity's top-level ``citations`` and ``search_results``, then OpenAI's
        ``url_citation`` annotations."""
        extra = completion.model_extra or {}
        urls: list[Any] = []
        if isinstance(extra.get("citations"), list):
            urls += extra["citations"]
        if isinstance(extra.get("search_results"), list):
            urls += [r.get("url") for r in extra["search_results"] if isinstance(r, dict)]
        message = completion.choices[0].message
        for annotation in getattr(message, "annotations", None) or []:
            citation = getattr(annotation, "url_citation", None)
            if getattr(annotation, "type", None) == "url_citation" and citation is not None:
                urls.append(citation.url)
        return unique_urls(urls)


class OpenAIProvider(OpenAICompatibleProvider):
    """OpenAI's own API."""


_COUNTRY_CODE = re.compile(r"^[A-Za-z]{2}$")


class PerplexityProvider(OpenAICompatibleProvider):
    """Perplexity Sonar: searches the web and cites its sources."""

    name = "perplexity"
    key_setting = "PERPLEXITY_API_KEY"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.api_key = settings.perplexity_api_key
        self.base_url = settings.perplexity_base_url

    def extra_body(self, request: AiRequest) -> dict[str, Any] | None:
        if not _COUNTRY_CODE.match(request.country or ""):
            return None
        return {"web_search_options": {"user_location": {"country": request.country.upper()}}}


class DeepSeekProvider(OpenAICompatibleProvider):
    """DeepSeek through the OpenAI-compatible endpoint at ``DEEPSEEK_BASE_URL``."""

    name = "deepseek"
    key_setting = "DEEPSEEK_API_KEY"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.api_key = settings.deepseek_api_key
        self.base_url = settings.deepseek_base_url

    def _check_configured(self) -> None:
        super()._check_configured()
        if not self.base_url:
            raise ProviderError(
                "deepseek: DEEPSEEK_BASE_URL is not set (the OpenAI-compatible endpoint that "
                "serves deepseek-v3.2-maas, e.g. a Vertex AI .../endpoints/openapi URL)",
                retryable=False,
            )
