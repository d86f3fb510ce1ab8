"""OpenAI (Responses API), Perplexity and DeepSeek (Chat Completions), on the OpenAI SDK.

* **OpenAI** (``gpt-*``, ``chat-latest``): ``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` (default
  the SDK's, ``https://api.openai.com/v1``). ``POST /responses`` with the ``web_search``
  tool and the query's country as its ``user_location``; ``include:
  ["web_search_call.action.sources"]`` returns every page the search retrieved. Cited
  sources are the answer's ``url_citation`` annotations, in the order they appear in it.
* **Perplexity** (``sonar``): ``PERPLEXITY_API_KEY``, ``PERPLEXITY_BASE_URL`` (default
  ``https://api.perplexity.ai``). Sonar always searches (``disable_search: true`` asks for
  the bare model); the country goes to ``web_search_options.user_location``. Cited: the
  top-level ``citations`` (the answer's ``[n]`` references); retrieved: ``search_results``.
* **DeepSeek** (``deepseek-v3.2-maas``): an OpenAI-compatible endpoint at
  ``DEEPSEEK_BASE_URL`` (Vertex AI Model-as-a-Service), with ``DEEPSEEK_API_KEY`` or, with
  ``JOBYARD_DEEPSEEK_VERTEX_AUTH=true``, Google credentials the SDK's Vertex provider
  refreshes (Vertex takes one-hour OAuth tokens). DeepSeek has no search API: its answers
  say ``webSearch: unavailable``.

The SDK's async client runs on its aiohttp transport (``DefaultAioHttpClient``): on the
default httpx transport a process spends ~3x the CPU per call once a thousand calls are in
flight (``tests/bench/concurrency.py``). The SDK's retries are off (``max_retries=0``):
retrying is the worker's job. The SDK is imported on first use, so a worker that never
calls these vendors does not pay for it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
    country_code,
    distinct,
    fingerprint,
    shared_client,
    system_prompt,
    web_source,
)

if TYPE_CHECKING:
    import openai


class OpenAISDKProvider:
    """What every vendor reached through the OpenAI SDK shares: its client and checks."""

    name = "openai"
    key_setting = "OPENAI_API_KEY"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api_key: str | None = settings.openai_api_key
        self.base_url: str | None = settings.openai_base_url
        self.timeout = settings.provider_timeout_seconds
        self.searches = self.name in settings.web_search_providers

    def client_options(self) -> dict[str, Any]:
        """How the client authenticates: a key (Vertex overrides this)."""
        return {"api_key": self.api_key, "base_url": self.base_url}

    def _client(self) -> openai.AsyncOpenAI:
        def make() -> openai.AsyncOpenAI:
            import openai

            return openai.AsyncOpenAI(
                **self.client_options(),
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

    def prepare(self) -> None:
        """Build the client now (see :meth:`AiProvider.prepare`)."""
        self._check_configured()
        self._client()

    def web_search(self, request: AiRequest) -> WebSearch:
        return WebSearch.ON if self.searches and request.web_search else WebSearch.OFF

    def answer_of(
        self,
        request: AiRequest,
        text: str,
        served: Served,
        web_search: WebSearch,
        cited: list[Source | None],
        retrieved: list[Source | None],
    ) -> AiAnswer:
        return AiAnswer(
            text=text,
            provider=self.name,
            model=request.model,
            cited=distinct(cited),
            retrieved=distinct(retrieved),
            served=served,
            web_search=web_search,
        )


class OpenAIProvider(OpenAISDKProvider):
    """OpenAI's Responses API, with its web search tool (see the module docstring)."""

    async def answer(self, request: AiRequest) -> AiAnswer:
        import openai

        self._check_configured()
        search = self.web_search(request)
        options: dict[str, Any] = {}
        if search is WebSearch.ON:
            options["tools"] = [
                {"type": "web_search", "user_location": approximate_location(request)}
            ]
            options["include"] = ["web_search_call.action.sources"]
        with errors.sdk_errors(self.name, openai, self.timeout):
            response = await self._client().responses.create(
                model=request.vendor_model,
                instructions=system_prompt(request),
                input=request.query,
                max_output_tokens=self.settings.max_answer_tokens,
                **options,
            )
        return self.to_answer(response, request, search)

    def to_answer(self, response: Any, request: AiRequest, search: WebSearch) -> AiAnswer:
        """The answer in a Responses API response, or the ProviderError it amounts to."""
        from openai.types.responses import Response

        if not isinstance(response, Response) or not isinstance(response.output, list):
            # The SDK hands back the raw text of a 2xx that is not application/json.
            raise errors.malformed_body(
                self.name, f"expected a response object, got: {str(response)[:120]!r}"
            )
        searches = [item for item in response.output if item.type == "web_search_call"]
        usage = response.usage
        served = Served(
            model=response.model,
            request_id=getattr(response, "_request_id", None) or response.id,
            usage=Usage(
                input_tokens=count(attribute(usage, "input_tokens")),
                output_tokens=count(attribute(usage, "output_tokens")),
                reasoning_tokens=count(
                    attribute(attribute(usage, "output_tokens_details"), "reasoning_tokens")
                ),
                cached_tokens=count(
                    attribute(attribute(usage, "input_tokens_details"), "cached_tokens")
                ),
                search_calls=sum(1 for s in searches if attribute(s.action, "type") == "search"),
            ),
        )
        if response.error is not None:
            raise ProviderError(
                f"{self.name}: the response failed: {response.error.code} {response.error.message}",
                retryable=True,
                served=served,
            )
        reason = attribute(response.incomplete_details, "reason")
        if response.status == "incomplete" and reason == "content_filter":
            raise errors.refused(self.name, "stopped by the content filter")
        if response.status == "incomplete":
            raise errors.truncated(self.name, f"incomplete: {reason}", served)
        # The final answer is the message after the last search; text written before a
        # search is the model thinking aloud, not its answer.
        last_search = max((i for i, o in enumerate(response.output) if o in searches), default=-1)
        texts: list[str] = []
        cited: list[tuple[int, Source | None]] = []
        for item in response.output[last_search + 1 :]:
            if item.type != "message":
                continue
            for part in item.content:
                if part.type == "refusal":
                    raise errors.refused(self.name, part.refusal)
                links = [n for n in part.annotations if n.type == "url_citation"]
                offset = sum(len(t) for t in texts)
                for note in links:
                    cited.append(
                        (offset + note.start_index, web_source(untracked(note.url), note.title))
                    )
                texts.append(
                    without_spans(part.text, [(n.start_index, n.end_index) for n in links])
                )
        text = "".join(texts).strip()
        if not text:
            raise errors.empty_answer(self.name, f"status {response.status}")
        retrieved: list[Source | None] = []
        for call in searches:
            for page in attribute(call.action, "sources") or []:
                retrieved.append(web_source(untracked(attribute(page, "url"))))
            retrieved.append(web_source(untracked(attribute(call.action, "url"))))  # open_page
        cited.sort(key=lambda c: c[0])
        return self.answer_of(request, text, served, search, [s for _, s in cited], retrieved)


_EMPTY_PARENS = re.compile(r"[ \t]*\(\s*\)")
_CITATION_MARKS = re.compile(r"\[\d{1,3}\]")


def without_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` without the cited links the annotations span (the sources are kept apart;
    left in, a link's domain would count as a brand mention)."""
    for start, end in sorted(spans, reverse=True):
        if 0 <= start <= end <= len(text):
            text = text[:start] + text[end:]
    return _EMPTY_PARENS.sub("", text)


def untracked(url: Any) -> Any:
    """``url`` without the ``utm_source=openai`` OpenAI adds to every cited link."""
    if not isinstance(url, str) or "utm_source=openai" not in url:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(k, v) for k, v in query if (k, v) != ("utm_source", "openai")]
    return urlunsplit(parts._replace(query=urlencode(query)))


class ChatCompletionsProvider(OpenAISDKProvider):
    """A vendor that speaks Chat Completions (Perplexity, DeepSeek)."""

    def extra_body(self, request: AiRequest, search: WebSearch) -> dict[str, Any] | None:
        """Vendor-specific request fields."""
        return None

    async def answer(self, request: AiRequest) -> AiAnswer:
        import openai

        self._check_configured()
        search = self.web_search(request)
        with errors.sdk_errors(self.name, openai, self.timeout):
            completion = await self._client().chat.completions.create(
                model=request.vendor_model,
                messages=[
                    {"role": "system", "content": system_prompt(request)},
                    {"role": "user", "content": request.query},
                ],
                max_tokens=self.settings.max_answer_tokens,
                extra_body=self.extra_body(request, search),
            )
        return self.to_answer(completion, request, search)

    def served(self, completion: Any) -> Served:
        usage = completion.usage
        return Served(
            model=completion.model,
            request_id=getattr(completion, "_request_id", None) or completion.id,
            usage=Usage(
                input_tokens=count(attribute(usage, "prompt_tokens")),
                output_tokens=count(attribute(usage, "completion_tokens")),
                reasoning_tokens=count(
                    attribute(usage, "reasoning_tokens")  # Perplexity
                    or attribute(attribute(usage, "completion_tokens_details"), "reasoning_tokens")
                ),
                cached_tokens=count(
                    attribute(attribute(usage, "prompt_tokens_details"), "cached_tokens")
                ),
                search_calls=self.search_calls(completion),
            ),
        )

    def search_calls(self, completion: Any) -> int:
        return 0

    def to_answer(self, completion: Any, request: AiRequest, search: WebSearch) -> AiAnswer:
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
        served = self.served(completion)
        if choice.finish_reason == "length":
            raise errors.truncated(self.name, "finish_reason length", served)
        text = message.content if isinstance(message.content, str) else ""
        if not text.strip():
            raise errors.empty_answer(self.name, f"finish_reason {choice.finish_reason}")
        cited, retrieved = self.sources(completion, text)
        return self.answer_of(request, self.clean(text), served, search, cited, retrieved)

    def clean(self, text: str) -> str:
        """The answer as a reader would quote it."""
        return text

    def sources(
        self, completion: Any, text: str
    ) -> tuple[list[Source | None], list[Source | None]]:
        """(cited, retrieved) sources of a completion."""
        return [], []


class PerplexityProvider(ChatCompletionsProvider):
    """Perplexity Sonar: searches the web and cites its sources."""

    name = "perplexity"
    key_setting = "PERPLEXITY_API_KEY"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.api_key = settings.perplexity_api_key
        self.base_url = settings.perplexity_base_url

    def extra_body(self, request: AiRequest, search: WebSearch) -> dict[str, Any] | None:
        if search is not WebSearch.ON:
            return {"disable_search": True}
        code = country_code(request)
        if code is None:
            return None
        return {"web_search_options": {"user_location": {"country": code}}}

    def clean(self, text: str) -> str:
        """Without the ``[n]`` marks that point into ``citations`` (kept apart, in order)."""
        return _CITATION_MARKS.sub("", text).strip()

    def search_calls(self, completion: Any) -> int:
        usage = completion.usage
        searches = attribute(usage, "num_search_queries")
        if searches is not None:
            return count(searches)
        return 1 if (completion.model_extra or {}).get("search_results") else 0

    def sources(
        self, completion: Any, text: str
    ) -> tuple[list[Source | None], list[Source | None]]:
        """Cited: ``citations`` when sent, else the ``search_results`` the answer's ``[n]``
        marks point at, in the order it cites them (Perplexity deprecated ``citations``
        for ``search_results``); retrieved: every search result."""
        extra = completion.model_extra or {}
        results = [r for r in extra.get("search_results") or [] if isinstance(r, dict)]
        titles = {r.get("url"): r.get("title") for r in results}
        citations = extra.get("citations")
        if not isinstance(citations, list):
            marks = [int(m.group(0)[1:-1]) for m in _CITATION_MARKS.finditer(text)]
            citations = [results[n - 1].get("url") for n in marks if 0 < n <= len(results)]
        cited = [web_source(url, titles.get(url)) for url in citations if url]
        retrieved = [web_source(r.get("url"), r.get("title")) for r in results]
        return cited, retrieved


class DeepSeekProvider(ChatCompletionsProvider):
    """DeepSeek through the OpenAI-compatible endpoint at ``DEEPSEEK_BASE_URL``."""

    name = "deepseek"
    key_setting = "DEEPSEEK_API_KEY"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.api_key = settings.deepseek_api_key
        self.base_url = settings.deepseek_base_url
        self.vertex_auth = settings.deepseek_vertex_auth

    def web_search(self, request: AiRequest) -> WebSearch:
        return WebSearch.UNAVAILABLE

    def client_options(self) -> dict[str, Any]:
        if not self.vertex_auth:
            return super().client_options()
        from openai.providers import vertex

        # Application Default Credentials, refreshed by google-auth before they expire.
        return {"provider": vertex(base_url=self.base_url)}

    def _check_configured(self) -> None:
        if not self.base_url:
            raise ProviderError(
                "deepseek: DEEPSEEK_BASE_URL is not set (the OpenAI-compatible endpoint that "
                "serves deepseek-v3.2-maas, e.g. a Vertex AI .../endpoints/openapi URL)",
                retryable=False,
            )
        if not self.vertex_auth:
            super()._check_configured()
