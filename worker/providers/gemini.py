"""Google Gemini (``gemini-*``) through the official google-genai SDK's ``generate_content``.

The SDK's async client (``client.aio``) is used. ``GEMINI_API_KEY``, ``GEMINI_BASE_URL``
(default the SDK's,
``https://generativelanguage.googleapis.com``); requests go to
``<base>/v1beta/models/{model}:generateContent`` (v1beta pinned: the SDK's own default moved
to v1, which lacks preview models). The SDK's retries are off (``HttpRetryOptions(attempts=1)``).
A blocked prompt (``promptFeedback.blockReason``) or a candidate stopped for safety
(``finishReason`` SAFETY, RECITATION, PROHIBITED_CONTENT...) is a non-retryable refusal.
A 429's wait comes from its ``google.rpc.RetryInfo``. ``MAX_TOKENS`` fails: a cut answer is
never stored.

Web search is the ``google_search`` grounding tool; the query's language goes to its
``retrieval_config`` and its country to the system instruction (the Gemini API's search
takes no country). Sources come from the grounding metadata: every ``groundingChunks[]``
was retrieved, and those that ``groundingSupports[]`` attach to the answer's text were
cited, in the order the answer cites them. A chunk's ``uri`` is a
``vertexaisearch.cloud.google.com/grounding-api-redirect/...`` link and its ``title`` the
page's domain: each link is resolved to its target with one HEAD request (not followed
further), so sources name the real page; an unresolved one keeps the title's domain and
no url. ``citation_metadata`` is training-data recitation, not a source, and is left out.
The SDK is imported on first use.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import aiohttp

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
    count,
    distinct,
    domain_of,
    fingerprint,
    shared_client,
    system_prompt,
    web_source,
)

if TYPE_CHECKING:
    from google import genai

log = logging.getLogger(__name__)

API_VERSION = "v1beta"
REDIRECT_PATH = "/grounding-api-redirect/"

# Finish reasons that mean the answer was withheld by a safety or policy filter.
REFUSAL_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "MODEL_ARMOR",
    }
)


def _name(value: Any) -> str:
    """An SDK enum (or plain string) as its name."""
    return str(getattr(value, "value", value) or "")


class GeminiProvider:
    """Gemini models (see the module docstring)."""

    name = "google-generative-ai"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api_key = settings.gemini_api_key
        self.base_url = settings.gemini_base_url
        self.timeout = settings.provider_timeout_seconds
        self.searches = self.name in settings.web_search_providers

    def _client(self) -> genai.Client:
        def make() -> genai.Client:
            from google import genai
            from google.genai import types

            return genai.Client(
                api_key=self.api_key,
                vertexai=False,
                http_options=types.HttpOptions(
                    base_url=self.base_url,
                    api_version=API_VERSION,
                    timeout=max(1, round(self.timeout * 1000)),  # milliseconds
                    retry_options=types.HttpRetryOptions(attempts=1),  # the worker retries
                ),
            )

        key = ("google-genai", fingerprint(self.api_key), self.base_url or "")
        return shared_client((*key, repr(self.timeout)), make)

    def _redirects(self) -> aiohttp.ClientSession:
        def make() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=min(self.timeout, 10.0)),
                connector=aiohttp.TCPConnector(limit=self.settings.provider_max_connections),
            )

        return shared_client(("gemini-redirects", repr(self.timeout)), make)

    def prepare(self) -> None:
        """Build the client now (see :meth:`AiProvider.prepare`)."""
        self._client()

    async def answer(self, request: AiRequest) -> AiAnswer:
        from google.genai import errors as genai_errors
        from google.genai import types

        if not self.api_key:
            raise ProviderError(f"{self.name}: GEMINI_API_KEY is not set", retryable=False)
        search = WebSearch.ON if self.searches and request.web_search else WebSearch.OFF
        config = types.GenerateContentConfig(
            system_instruction=system_prompt(request),
            max_output_tokens=self.settings.max_answer_tokens,
        )
        if search is WebSearch.ON:
            config.tools = [types.Tool(google_search=types.GoogleSearch())]
            config.tool_config = types.ToolConfig(
                retrieval_config=types.RetrievalConfig(language_code=request.language)
            )
        try:
            response = await self._client().aio.models.generate_content(
                model=request.vendor_model, contents=request.query, config=config
            )
        except genai_errors.APIError as exc:
            response_obj = getattr(exc, "response", None)
            raise errors.http_error(
                self.name,
                int(exc.code or 0),
                message=exc.message or "",
                headers=getattr(response_obj, "headers", None),
                body=exc.details,
                code=exc.status,
            ) from exc
        except (json.JSONDecodeError, genai_errors.UnknownApiResponseError) as exc:
            raise errors.malformed_body(self.name, f"the body is not JSON ({exc})") from exc
        except Exception as exc:
            if errors.is_transport_error(exc):
                raise errors.transport_error(self.name, exc, self.timeout) from exc
            raise
        answer = self.to_answer(response, request, search)
        if self.settings.resolve_source_redirects:
            answer = await self.resolve_redirects(answer)
        return answer

    def to_answer(self, response: Any, request: AiRequest, search: WebSearch) -> AiAnswer:
        """The answer in a ``GenerateContentResponse``, or the ProviderError it amounts to."""
        feedback = getattr(response, "prompt_feedback", None)
        block_reason = _name(getattr(feedback, "block_reason", None))
        if block_reason:
            detail = getattr(feedback, "block_reason_message", None) or block_reason
            raise errors.refused(self.name, f"prompt blocked: {detail}")
        candidates = getattr(response, "candidates", None)
        if not isinstance(candidates, list) or not candidates:
            raise errors.malformed_body(self.name, "no candidates and no block reason")
        candidate = candidates[0]
        grounding = candidate.grounding_metadata
        usage = response.usage_metadata
        served = Served(
            model=response.model_version,
            request_id=response.response_id,
            usage=Usage(
                input_tokens=count(attribute(usage, "prompt_token_count"))
                + count(attribute(usage, "tool_use_prompt_token_count")),
                output_tokens=count(attribute(usage, "candidates_token_count"))
                + count(attribute(usage, "thoughts_token_count")),
                reasoning_tokens=count(attribute(usage, "thoughts_token_count")),
                cached_tokens=count(attribute(usage, "cached_content_token_count")),
                search_calls=len(attribute(grounding, "web_search_queries") or []),
            ),
        )
        finish_reason = _name(candidate.finish_reason)
        if finish_reason in REFUSAL_FINISH_REASONS:
            raise errors.refused(self.name, f"finish_reason {finish_reason}")
        if finish_reason == "MAX_TOKENS":
            raise errors.truncated(self.name, "finishReason MAX_TOKENS", served)
        parts = (candidate.content.parts if candidate.content else None) or []
        text = "".join(p.text for p in parts if isinstance(p.text, str) and not p.thought)
        if not text.strip():
            raise errors.empty_answer(self.name, f"finish_reason {finish_reason or 'none'}")
        cited, retrieved = self.sources(grounding)
        return AiAnswer(
            text=text,
            provider=self.name,
            model=request.model,
            cited=cited,
            retrieved=retrieved,
            served=served,
            web_search=search,
        )

    @staticmethod
    def sources(grounding: Any) -> tuple[list[Source], list[Source]]:
        """(cited, retrieved): chunks in retrieval order; cited ones in the order the
        answer's supports first refer to them."""
        chunks = [_chunk_source(c) for c in attribute(grounding, "grounding_chunks") or []]
        order: list[int] = []
        supports = sorted(
            attribute(grounding, "grounding_supports") or [],
            key=lambda s: count(attribute(attribute(s, "segment"), "start_index")),
        )
        for support in supports:
            for index in attribute(support, "grounding_chunk_indices") or []:
                if isinstance(index, int) and 0 <= index < len(chunks) and index not in order:
                    order.append(index)
        return distinct(chunks[i] for i in order), distinct(chunks)

    async def resolve_redirects(self, answer: AiAnswer) -> AiAnswer:
        """The answer with each grounding redirect replaced by the page it leads to."""
        links = {s.redirect_url for s in (*answer.cited, *answer.retrieved) if s.redirect_url}
        if not links:
            return answer
        targets = dict(
            zip(links, await asyncio.gather(*(self._target(u) for u in links)), strict=True)
        )

        def resolved(sources: list[Source]) -> list[Source]:
            out = []
            for source in sources:
                target = targets.get(source.redirect_url or "")
                if target is not None:
                    source = replace(source, url=target, domain=domain_of(target) or source.domain)
                out.append(source)
            return out

        return replace(answer, cited=resolved(answer.cited), retrieved=resolved(answer.retrieved))

    async def _target(self, link: str) -> str | None:
        """Where ``link`` redirects to (None: not resolvable now; the source keeps its
        domain)."""
        try:
            async with self._redirects().head(link, allow_redirects=False) as response:
                location = response.headers.get("Location")
        except (TimeoutError, aiohttp.ClientError, ValueError):
            log.info("grounding redirect %s not resolved", link, exc_info=True)
            return None
        source = web_source(location)
        return source.url if source is not None else None


def _chunk_source(chunk: Any) -> Source | None:
    """A grounding chunk's page: a redirect link keeps the title as its domain."""
    web = attribute(chunk, "web")
    uri, title = attribute(web, "uri"), attribute(web, "title")
    if not isinstance(uri, str) or not uri:
        return None
    if REDIRECT_PATH not in uri:
        return web_source(uri, title)
    domain = attribute(web, "domain") or title or ""
    domain = str(domain).strip().lower().removeprefix("www.")
    return Source(url=None, domain=domain, title=title, redirect_url=uri)
