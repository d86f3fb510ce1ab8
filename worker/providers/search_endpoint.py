"""Search-result and scraper sources through one configurable HTTP endpoint.

The models ``ai-overview``, ``ai-mode`` (Google's AI answers on a results page) and
``scp-ml-chatgpt``, ``scp-ml-google-ai-mode``, ``scp-ml-gemini`` (answers scraped from the
consumer apps) are not APIs anyone sells with an SDK: jobyard asks one HTTP service of
yours, ``JOBYARD_SEARCH_ENDPOINT_URL``, that fetches them. Its contract:

Request::

    POST <JOBYARD_SEARCH_ENDPOINT_URL>
    Content-Type: application/json
    Accept: application/json

    {
      "source":    "ai-overview",   // the model id: ai-overview | ai-mode | scp-ml-chatgpt |
                                    //   scp-ml-google-ai-mode | scp-ml-gemini
      "query":     "best crm for startups",
      "language":  "en",            // the query's language (2-5 chars, e.g. "pt-BR")
      "country":   "US",            // the query's country (ISO 3166-1 alpha-2)
      "requestId": "<query id>:<model>:<run>",  // stable per execution: dedupe on it
      "attempt":   1                // 1 on the first try, 2 on the first retry...
    }

Responses:

* ``200`` ``{"text": "<the answer>", "citations": ["https://...", ...]}`` — success.
  ``text`` is required and non-empty; ``citations`` is optional, a list of URLs (strings,
  or objects with a ``url`` and an optional ``title``), in the order the source shows them.
* ``200`` ``{"text": "", "refusal": "<why>"}`` — the source declined or showed no answer
  for this query (e.g. no AI overview on that results page): fails, not retried.
* ``429`` with ``Retry-After`` (seconds or HTTP-date) or ``retry-after-ms`` — retried, no
  sooner than that.
* ``408``, ``409``, ``5xx`` — retried (with ``Retry-After`` if sent).
* any other status (``400``, ``401``, ``403``, ``404``, ``422``...) — fails, not retried.
  Error bodies: ``{"error": "<message>"}`` (or ``{"error": {"message": ...}}``, or text).
* a ``200`` whose body is not that JSON object — retried (see ``errors.malformed_body``).

The call times out after ``JOBYARD_PROVIDER_TIMEOUT_SECONDS`` without a response (retried).
No credential setting exists for the endpoint: put one in the URL if you need it —
``https://user:secret@host/answer`` is sent as HTTP Basic auth — or keep the service on a
private network.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from shared.settings import Settings
from worker.providers import errors
from worker.providers.base import AiAnswer, AiRequest, ProviderError, WebSearch
from worker.providers.common import distinct, shared_client, web_source


class SearchEndpointProvider:
    """Every search/scraper source, through ``JOBYARD_SEARCH_ENDPOINT_URL``."""

    name = "search-endpoint"

    def __init__(self, settings: Settings) -> None:
        self.url = settings.search_endpoint_url
        self.timeout = settings.provider_timeout_seconds
        self.max_connections = settings.provider_max_connections

    def _client(self) -> aiohttp.ClientSession:
        def make() -> aiohttp.ClientSession:
            # aiohttp, not httpx: httpx's pool costs milliseconds of CPU per call once
            # hundreds are in flight (tests/bench/concurrency.py).
            return aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": "application/json", "User-Agent": "jobyard"},
                connector=aiohttp.TCPConnector(limit=self.max_connections),
            )

        return shared_client(("search-endpoint", repr(self.timeout)), make)

    def prepare(self) -> None:
        """Build the client now (see :meth:`AiProvider.prepare`): in the event loop that
        will use it, since an aiohttp session belongs to one loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._client()

    async def answer(self, request: AiRequest) -> AiAnswer:
        if not self.url:
            raise ProviderError(
                "search endpoint: JOBYARD_SEARCH_ENDPOINT_URL is not set", retryable=False
            )
        source = request.provider or self.name  # ai-overview, ai-mode, scraper
        payload = {
            "source": request.model,
            "query": request.query,
            "language": request.language,
            "country": request.country,
            "requestId": request.seed,
            "attempt": request.attempt,
        }
        try:
            async with self._client().post(
                self.url, json=payload, allow_redirects=False
            ) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise errors.transport_error(source, exc, self.timeout) from exc
        try:
            body: Any = json.loads(raw)
        except ValueError as exc:
            if status != 200:
                raise errors.http_error(
                    source, status, headers=headers, body=raw.decode(errors="replace")
                ) from exc
            raise errors.malformed_body(source, f"the body is not JSON ({exc})") from exc
        if status != 200:
            raise errors.http_error(source, status, headers=headers, body=body)
        if not isinstance(body, dict):
            raise errors.malformed_body(source, f"expected {{text, citations}}, got {body!r}")
        refusal = body.get("refusal")
        if refusal:
            raise errors.refused(source, str(refusal))
        text = body.get("text")
        if not isinstance(text, str):
            raise errors.malformed_body(source, f"no 'text' string in {body!r}")
        if not text.strip():
            raise errors.empty_answer(source, "no text")
        citations = body.get("citations") or []
        if not isinstance(citations, list):
            raise errors.malformed_body(source, "'citations' is not a list")
        cited = [
            web_source(c.get("url"), c.get("title")) if isinstance(c, dict) else web_source(c)
            for c in citations
        ]
        return AiAnswer(
            text=text,
            provider=source,
            model=request.model,
            cited=distinct(cited),
            retrieved=distinct(cited),
            web_search=WebSearch.ON,  # a results page or a consumer app: always searched
        )
