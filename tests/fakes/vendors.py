"""The vendor fakes: each speaks one API's wire format over :class:`FakeServer`.

Built from the vendors' API references and their SDKs' types, not from jobyard's code:

* every fake rejects, as its vendor does, a missing or wrong credential, an unknown model
  (the catalogues come from the SDKs' model literals, less the models the vendors have
  shut down), and a request the vendor would refuse (Anthropic without
  ``anthropic-version`` or ``max_tokens``);
* sources appear **only when the request asked for search**: OpenAI's ``web_search`` tool,
  Anthropic's ``web_search_20250305``, Gemini's ``google_search``; Perplexity unless
  ``disable_search``; DeepSeek never;
* the shapes are the vendors': Responses output items with ``url_citation`` annotations
  over inline ``([domain](url?utm_source=openai))`` links; Anthropic's preamble,
  ``server_tool_use``, ``web_search_tool_result`` and cited text blocks; Gemini's
  ``groundingMetadata`` with ``grounding-api-redirect`` links (served by the fake: 302 to
  the page) whose titles are the domains, and ``groundingSupports``;
* usage grows with the prompt and answer (about four characters a token), and names the
  dated snapshot that served an alias.
"""

from __future__ import annotations

import re
import secrets
import time
import typing
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from tests.fakes.behaviours import RateLimited, Refusal, Reply, Truncated
from tests.fakes.server import FakeServer, RecordedRequest, Response, retry_headers

# Models the vendors have shut down (their deprecation pages), though older SDKs still
# list them: a request for one is answered as an unknown model.
SHUT_DOWN = frozenset(
    {
        "chatgpt-4o-latest",
        "gpt-5-chat-latest",
        "gpt-5.1-chat-latest",
        "gpt-5.2-chat-latest",
        "gpt-5.3-chat-latest",
    }
)
_DATED = re.compile(r"^(?P<alias>.+)-(?P<date>\d{4}-?\d{2}-?\d{2})$")


def _literal_models(alias: Any) -> frozenset[str]:
    """The model names an SDK's ``Literal`` type lists."""
    names: set[str] = set()
    for arg in typing.get_args(alias):
        if isinstance(arg, str):
            names.add(arg)
        else:
            names |= _literal_models(arg)
    return frozenset(names)


def _snapshots(models: frozenset[str]) -> dict[str, str]:
    """Each alias → its newest dated snapshot (``gpt-4.1-mini`` → ``gpt-4.1-mini-2025-04-14``)."""
    newest: dict[str, str] = {}
    for name in sorted(models):
        match = _DATED.match(name)
        if match:
            newest[match.group("alias")] = name
    return newest


def tokens(text: str) -> int:
    """About as many tokens as a vendor's tokenizer would count (4 characters a token)."""
    return max(1, len(text) // 4)


def _domain(url: str) -> str:
    return (urlsplit(url).hostname or "").removeprefix("www.")


def _body(request: RecordedRequest) -> dict[str, Any]:
    return request.json if isinstance(request.json, dict) else {}


class FakeOpenAI(FakeServer):
    """OpenAI: the Responses API (``POST <base_url>/responses``) and Chat Completions
    (``POST <base_url>/chat/completions``); ``base_url`` ends in ``/v1`` like the real one.

    With the ``web_search`` tool, a :class:`Reply` becomes a ``web_search_call`` (its
    ``action.sources`` only when ``include`` asks for them) and a message whose text ends
    in an inline link per citation, each with a ``url_citation`` annotation. Without it,
    the message is the bare text. :class:`Refusal` is a ``refusal`` content item
    (``kind="content_filter"``: ``incomplete_details.reason: content_filter``).
    """

    prefix = "/v1"
    routes = ("/responses", "/chat/completions")

    def __init__(self, *, prefix: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if prefix is not None:
            self.prefix = prefix

    # -- what the vendor accepts -----------------------------------------------------

    @classmethod
    def models(cls) -> frozenset[str]:
        from openai.types.shared import ChatModel

        return _literal_models(ChatModel) - SHUT_DOWN

    def serves(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and request.path in {
            f"{self.prefix}{route}" for route in self.routes
        }

    def accepts(self, credential: str) -> bool:
        """Whether ``credential`` (a key or bearer token) is valid here."""
        return credential == self.api_key

    def rejection(self, request: RecordedRequest) -> Response | None:
        if request.api_key is None:
            return self.error(401, "You didn't provide an API key.", {}, request)
        if not self.accepts(request.api_key):
            return self.error(401, "Incorrect API key provided.", {}, request)
        model = _body(request).get("model")
        if model not in self.models():
            message = f"The model `{model}` does not exist or you do not have access to it."
            return self.error(404, message, {}, request)
        return None

    def served_model(self, request: RecordedRequest) -> str:
        model = str(_body(request).get("model"))
        return _snapshots(self.models()).get(model, model)

    def is_responses(self, request: RecordedRequest) -> bool:
        return request.path.endswith("/responses")

    @staticmethod
    def searched(request: RecordedRequest) -> bool:
        tools = _body(request).get("tools") or []
        return any(t.get("type", "").startswith("web_search") for t in tools)

    @staticmethod
    def system_prompt(request: RecordedRequest) -> str:
        """The instructions (Responses) or system message (Chat Completions) sent."""
        body = _body(request)
        if "instructions" in body:
            return str(body["instructions"])
        messages = body.get("messages", [])
        return "\n".join(
            str(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
        )

    @staticmethod
    def prompt(request: RecordedRequest) -> str:
        body = _body(request)
        if "input" in body:
            return str(body["input"])
        return "\n".join(str(m.get("content")) for m in body.get("messages", []))

    # -- Responses API -----------------------------------------------------------------

    def response(
        self,
        request: RecordedRequest,
        output: list[dict[str, Any]],
        status: str = "completed",
        incomplete: str | None = None,
    ) -> Response:
        text = "".join(
            c.get("text", "") for o in output if o["type"] == "message" for c in o["content"]
        )
        searches = sum(1 for o in output if o["type"] == "web_search_call")
        input_tokens = tokens(self.system_prompt(request) + self.prompt(request))
        input_tokens += 1500 * searches  # the search results the model read
        payload = {
            "id": f"resp_{secrets.token_hex(24)}",
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": _body(request).get("instructions"),
            "max_output_tokens": _body(request).get("max_output_tokens"),
            "model": self.served_model(request),
            "output": output,
            "parallel_tool_calls": True,
            "temperature": 1.0,
            "tool_choice": "auto",
            "tools": _body(request).get("tools") or [],
            "top_p": 1.0,
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": tokens(text),
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + tokens(text),
            },
        }
        headers = {"x-request-id": f"req_{secrets.token_hex(16)}"}
        return Response.json(200, payload, headers)

    @staticmethod
    def message(content: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
        return {
            "id": f"msg_{secrets.token_hex(24)}",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def search_call(self, request: RecordedRequest, urls: list[str]) -> dict[str, Any]:
        action: dict[str, Any] = {"type": "search", "query": self.prompt(request)[:100]}
        if "web_search_call.action.sources" in (_body(request).get("include") or []):
            action["sources"] = [{"type": "url", "url": url} for url in urls]
        return {
            "id": f"ws_{secrets.token_hex(24)}",
            "type": "web_search_call",
            "status": "completed",
            "action": action,
        }

    def responses_reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        if not self.searched(request):
            text = {"type": "output_text", "text": behaviour.text, "annotations": []}
            return self.response(request, [self.message([text])])
        # A cited page is an inline markdown link in the text; the annotation spans it.
        text, annotations = behaviour.text, []
        for url in behaviour.citations:
            link = f"{url}{'&' if '?' in url else '?'}utm_source=openai"
            start = len(text) + 1
            text += f" ([{_domain(url)}]({link}))"
            annotations.append(
                {
                    "type": "url_citation",
                    "start_index": start,
                    "end_index": len(text),
                    "url": link,
                    "title": f"{_domain(url)}: a page about it",
                }
            )
        retrieved = list(dict.fromkeys((*behaviour.citations, *behaviour.retrieved)))
        output = [
            self.search_call(request, retrieved),
            self.message([{"type": "output_text", "text": text, "annotations": annotations}]),
        ]
        return self.response(request, output)

    # -- Chat Completions --------------------------------------------------------------

    def completion(
        self,
        request: RecordedRequest,
        message: dict[str, Any],
        finish_reason: str = "stop",
        **extra: Any,
    ) -> Response:
        text = message.get("content") or ""
        prompt_tokens = tokens(self.prompt(request))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens(text),
            "total_tokens": prompt_tokens + tokens(text),
            **extra.pop("usage", {}),
        }
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.served_model(request),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "refusal": None, **message},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
            **extra,
        }
        headers = {"x-request-id": f"req_{secrets.token_hex(16)}"}
        return Response.json(200, payload, headers)

    def chat_reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        return self.completion(request, {"content": behaviour.text})

    # -- behaviours ----------------------------------------------------------------------

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        if self.is_responses(request):
            return self.responses_reply(behaviour, request)
        return self.chat_reply(behaviour, request)

    def truncated(self, behaviour: Truncated, request: RecordedRequest) -> Response:
        if self.is_responses(request):
            text = {"type": "output_text", "text": behaviour.text, "annotations": []}
            output = [self.message([text], "incomplete")]
            return self.response(request, output, "incomplete", "max_output_tokens")
        return self.completion(request, {"content": behaviour.text}, "length")

    def refusal(self, behaviour: Refusal, request: RecordedRequest) -> Response:
        if self.is_responses(request):
            if behaviour.kind == "content_filter":
                return self.response(request, [], "incomplete", "content_filter")
            content = [{"type": "refusal", "refusal": behaviour.message}]
            return self.response(request, [self.message(content)])
        if behaviour.kind == "content_filter":
            return self.completion(request, {"content": None}, "content_filter")
        return self.completion(request, {"content": None, "refusal": behaviour.message})

    def empty(self, request: RecordedRequest) -> Response:
        if self.is_responses(request):
            return self.response(request, [])
        return self.completion(request, {"content": ""})

    def rate_limited(self, behaviour: RateLimited, request: RecordedRequest) -> Response:
        model = _body(request).get("model")
        unit = "requests per day (RPD)" if behaviour.window == "day" else "requests per min (RPM)"
        message = (
            f"Rate limit reached for {model} in organization org-fake on {unit}: "
            "Limit 500, Used 500, Requested 1. Please try again later."
        )
        return self.error(429, message, retry_headers(behaviour), request)

    def error(
        self, status: int, message: str, headers: dict[str, str], request: RecordedRequest
    ) -> Response:
        kind, code = {
            400: ("invalid_request_error", None),
            401: ("invalid_request_error", "invalid_api_key"),
            404: ("invalid_request_error", "model_not_found"),
            429: ("requests", "rate_limit_exceeded"),
        }.get(status, ("server_error", None))
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return Response.json(status, body, headers)


class FakeDeepSeek(FakeOpenAI):
    """DeepSeek on Vertex AI Model-as-a-Service: Chat Completions at ``<root>/chat/completions``
    (the endpoint's ``.../endpoints/openapi`` root), models named ``publisher/model``, no
    search of any kind. ``tokens``: bearer tokens accepted besides ``api_key`` (set by a
    fake OAuth server, for Vertex's short-lived credentials)."""

    prefix = ""
    routes = ("/chat/completions",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens: set[str] = set()

    @classmethod
    def models(cls) -> frozenset[str]:
        return frozenset({"deepseek-ai/deepseek-v3.2-maas", "deepseek-ai/deepseek-r1-0528-maas"})

    def accepts(self, credential: str) -> bool:
        return credential == self.api_key or credential in self.tokens


class FakePerplexity(FakeOpenAI):
    """Perplexity Sonar: OpenAI's Chat Completions at ``<root>/chat/completions`` (no
    ``/v1``). Sonar searches unless the request says ``disable_search``: the cited pages are
    the top-level ``citations`` (the answer's ``[n]`` references), every page found is in
    ``search_results`` with its title and date, and usage counts the searches."""

    prefix = ""
    routes = ("/chat/completions",)

    @classmethod
    def models(cls) -> frozenset[str]:
        return frozenset({"sonar", "sonar-pro", "sonar-reasoning-pro", "sonar-deep-research"})

    def chat_reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        if _body(request).get("disable_search"):
            return self.completion(request, {"content": behaviour.text})
        found = list(dict.fromkeys((*behaviour.citations, *behaviour.retrieved)))
        text = behaviour.text + "".join(f"[{i}]" for i in range(1, len(behaviour.citations) + 1))
        results = [
            {"title": f"{_domain(url)}: a page about it", "url": url, "date": "2026-10-01"}
            for url in found
        ]
        return self.completion(
            request,
            {"content": text},
            citations=list(behaviour.citations),
            search_results=results,
            usage={"search_context_size": "low", "num_search_queries": 1},
        )


class FakeAnthropic(FakeServer):
    """Anthropic Messages (``POST <base_url>/v1/messages``).

    Requires the key (``x-api-key`` or a bearer token), ``anthropic-version`` and
    ``max_tokens``. With the
    ``web_search_20250305`` tool a :class:`Reply` is the model's preamble, a
    ``server_tool_use`` and its ``web_search_tool_result`` (every page found), then the
    answer in text blocks, the first carrying one ``web_search_result_location`` citation
    per cited page; usage counts ``server_tool_use.web_search_requests``. Without it, one
    text block. :class:`Refusal` is ``stop_reason: refusal``; 429 ``rate_limit_error``,
    529 ``overloaded_error``; :class:`Truncated` ``max_tokens`` or ``pause_turn``.
    """

    def serves(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and request.path == "/v1/messages"

    @classmethod
    def models(cls) -> frozenset[str]:
        from anthropic.types import Model

        return _literal_models(Model)

    def rejection(self, request: RecordedRequest) -> Response | None:
        # The key goes in x-api-key or, as SDK 2.x sends it, Authorization: Bearer.
        if request.api_key is None:
            return self.error(401, "x-api-key header is required", {}, request)
        if request.api_key != self.api_key:
            return self.error(401, "invalid x-api-key", {}, request)
        if "anthropic-version" not in request.headers:
            return self.error(400, "anthropic-version: header is required", {}, request)
        body = _body(request)
        if not isinstance(body.get("max_tokens"), int):
            return self.error(400, "max_tokens: Field required", {}, request)
        if body.get("model") not in self.models():
            return self.error(404, f"model: {body.get('model')}", {}, request)
        return None

    @staticmethod
    def searched(request: RecordedRequest) -> bool:
        tools = _body(request).get("tools") or []
        return any(str(t.get("type", "")).startswith("web_search_") for t in tools)

    @staticmethod
    def system_prompt(request: RecordedRequest) -> str:
        system = _body(request).get("system", "")
        if isinstance(system, list):
            return "\n".join(str(block.get("text", "")) for block in system)
        return str(system)

    def message(
        self,
        request: RecordedRequest,
        content: list[dict[str, Any]],
        stop_reason: str,
        searches: int = 0,
    ) -> Response:
        body = _body(request)
        model = str(body.get("model") or "claude-haiku-4-5")
        served = _snapshots(self.models()).get(model, model)
        prompt = self.system_prompt(request) + str(body.get("messages"))
        output = "".join(str(b.get("text", "")) for b in content)
        payload = {
            "id": f"msg_{secrets.token_hex(12)}",
            "type": "message",
            "role": "assistant",
            "model": served,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": tokens(prompt) + 2000 * searches,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": tokens(output) if output else 1,
                "server_tool_use": {"web_search_requests": searches},
                "service_tier": "standard",
            },
        }
        return Response.json(200, payload, {"request-id": f"req_{secrets.token_hex(12)}"})

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        if not self.searched(request):
            return self.message(request, [{"type": "text", "text": behaviour.text}], "end_turn")
        tool_id = f"srvtoolu_{secrets.token_hex(12)}"
        found = list(dict.fromkeys((*behaviour.citations, *behaviour.retrieved)))
        first, _, rest = behaviour.text.partition(". ")
        answer: list[dict[str, Any]] = [
            {
                "type": "text",
                "text": first + ("." if rest else ""),
                "citations": [
                    {
                        "type": "web_search_result_location",
                        "url": url,
                        "title": f"{_domain(url)}: a page about it",
                        "encrypted_index": secrets.token_urlsafe(16),
                        "cited_text": first[:150],
                    }
                    for url in behaviour.citations
                ]
                or None,
            }
        ]
        if rest:
            answer.append({"type": "text", "text": " " + rest, "citations": None})
        content = [
            {"type": "text", "text": behaviour.preamble, "citations": None},
            {
                "type": "server_tool_use",
                "id": tool_id,
                "name": "web_search",
                "input": {"query": str(_body(request).get("messages"))[:80]},
            },
            {
                "type": "web_search_tool_result",
                "tool_use_id": tool_id,
                "content": [
                    {
                        "type": "web_search_result",
                        "url": url,
                        "title": f"{_domain(url)}: a page about it",
                        "encrypted_content": secrets.token_urlsafe(24),
                        "page_age": "October 1, 2026",
                    }
                    for url in found
                ],
            },
            *answer,
        ]
        return self.message(request, content, "end_turn", searches=1)

    def truncated(self, behaviour: Truncated, request: RecordedRequest) -> Response:
        return self.message(request, [{"type": "text", "text": behaviour.text}], behaviour.kind)

    def refusal(self, behaviour: Refusal, request: RecordedRequest) -> Response:
        content = [{"type": "text", "text": behaviour.message}] if behaviour.message else []
        return self.message(request, content, "refusal")

    def empty(self, request: RecordedRequest) -> Response:
        return self.message(request, [], "end_turn")

    def error(
        self, status: int, message: str, headers: dict[str, str], request: RecordedRequest
    ) -> Response:
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            413: "request_too_large",
            429: "rate_limit_error",
            529: "overloaded_error",
        }.get(status, "api_error")
        body = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": f"req_{uuid.uuid4().hex[:12]}",
        }
        return Response.json(status, body, headers)


_GEMINI_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):generateContent$")
_REDIRECT_PATH = re.compile(r"^/grounding-api-redirect/(?P<token>[A-Za-z0-9_-]+)$")


class FakeGemini(FakeServer):
    """Gemini API ``generateContent`` (``POST <base_url>/v1beta/models/{model}:generateContent``).

    Requires ``x-goog-api-key`` (or ``?key=``). With the ``googleSearch`` tool a
    :class:`Reply` is grounded: ``groundingMetadata`` has the search queries, one chunk
    per page found — ``web.uri`` a ``/grounding-api-redirect/<token>`` link on this server
    (it answers 302 to the page, as vertexaisearch.cloud.google.com does) and ``web.title``
    the page's domain — and ``groundingSupports`` tying the answer's text to the cited
    chunks. Without it, no grounding. :class:`Refusal` blocks the prompt
    (``promptFeedback.blockReason``), or with ``kind="safety"`` ends the candidate with
    ``finishReason: SAFETY``. A 429 carries ``google.rpc.QuotaFailure`` (per-minute or
    per-day quota id) and ``google.rpc.RetryInfo`` details, as the real API does.
    """

    MODELS = frozenset(
        {
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "gemini-2.5-pro",
            "gemini-3-flash-preview",
            "gemini-3-pro-preview",
        }
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redirects: dict[str, str] = {}

    def serves(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and _GEMINI_PATH.match(request.path) is not None

    def side_route(self, request: RecordedRequest) -> Response | None:
        match = _REDIRECT_PATH.match(request.path)
        if match is None or request.method not in ("GET", "HEAD"):
            return None
        target = self.redirects.get(match.group("token"))
        if target is None:
            return Response(404, b"")
        return Response(302, b"", (("Location", target),))

    def rejection(self, request: RecordedRequest) -> Response | None:
        if request.api_key is None:
            return self.error(403, "Method doesn't allow unregistered callers.", {}, request)
        if request.api_key != self.api_key:
            return self.error(400, "API key not valid. Please pass a valid API key.", {}, request)
        if self.model_of(request) not in self.MODELS:
            message = f"models/{self.model_of(request)} is not found for API version v1beta"
            return self.error(404, message, {}, request)
        return None

    @staticmethod
    def model_of(request: RecordedRequest) -> str:
        match = _GEMINI_PATH.match(request.path)
        return match.group("model") if match else ""

    @staticmethod
    def searched(request: RecordedRequest) -> bool:
        tools = _body(request).get("tools") or []
        return any("googleSearch" in t or "google_search" in t for t in tools)

    @staticmethod
    def system_prompt(request: RecordedRequest) -> str:
        instruction = _body(request).get("systemInstruction") or {}
        return "\n".join(str(p.get("text", "")) for p in instruction.get("parts", []))

    def generated(self, request: RecordedRequest, **payload: Any) -> Response:
        candidates = payload.get("candidates") or []
        text = "".join(
            str(p.get("text", ""))
            for c in candidates
            for p in (c.get("content") or {}).get("parts", [])
        )
        grounded = any("groundingMetadata" in c for c in candidates)
        prompt_tokens = tokens(self.system_prompt(request) + str(_body(request).get("contents")))
        usage = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": tokens(text) if text else 0,
            "totalTokenCount": prompt_tokens + (tokens(text) if text else 0),
        }
        if grounded:
            usage["toolUsePromptTokenCount"] = 1800
            usage["totalTokenCount"] += 1800
        payload.setdefault("usageMetadata", usage)
        payload.setdefault("modelVersion", self.model_of(request))
        payload.setdefault("responseId", secrets.token_urlsafe(16))
        return Response.json(200, payload)

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": [{"text": behaviour.text}]},
            "finishReason": "STOP",
            "index": 0,
        }
        if self.searched(request):
            found = list(dict.fromkeys((*behaviour.citations, *behaviour.retrieved)))
            chunks = []
            for url in found:
                token = secrets.token_urlsafe(24).replace("-", "A").replace("_", "B")
                self.redirects[token] = url
                chunks.append(
                    {
                        "web": {
                            "uri": f"{self.url}/grounding-api-redirect/{token}",
                            "title": _domain(url),
                        }
                    }
                )
            supports = [
                {
                    "segment": {
                        "startIndex": 0,
                        "endIndex": len(behaviour.text),
                        "text": behaviour.text,
                    },
                    "groundingChunkIndices": [found.index(url)],
                    "confidenceScores": [0.9],
                }
                for url in behaviour.citations
            ]
            candidate["groundingMetadata"] = {
                "webSearchQueries": [str(_body(request).get("contents"))[:80]],
                "searchEntryPoint": {"renderedContent": "<div>search chips</div>"},
                "groundingChunks": chunks,
                "groundingSupports": supports,
            }
        return self.generated(request, candidates=[candidate])

    def truncated(self, behaviour: Truncated, request: RecordedRequest) -> Response:
        candidate = {
            "content": {"role": "model", "parts": [{"text": behaviour.text}]},
            "finishReason": "MAX_TOKENS",
            "index": 0,
        }
        return self.generated(request, candidates=[candidate])

    def refusal(self, behaviour: Refusal, request: RecordedRequest) -> Response:
        if behaviour.kind == "safety":
            candidate = {
                "finishReason": "SAFETY",
                "index": 0,
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
                ],
            }
            return self.generated(request, candidates=[candidate])
        return self.generated(request, promptFeedback={"blockReason": "SAFETY"})

    def empty(self, request: RecordedRequest) -> Response:
        candidate = {"content": {"role": "model", "parts": []}, "finishReason": "STOP"}
        return self.generated(request, candidates=[candidate])

    def rate_limited(self, behaviour: RateLimited, request: RecordedRequest) -> Response:
        headers = {}
        if behaviour.retry_after_ms is not None:
            headers["retry-after-ms"] = behaviour.retry_after_ms
        per = "PerDay" if behaviour.window == "day" else "PerMinute"
        details: list[dict[str, Any]] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/"
                        "generate_content_free_tier_requests",
                        "quotaId": f"GenerateRequests{per}PerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": self.model_of(request)},
                        "quotaValue": "250" if per == "PerDay" else "10",
                    }
                ],
            }
        ]
        if behaviour.retry_after is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{behaviour.retry_after}s",
                }
            )
        message = (
            "You exceeded your current quota, please check your plan and billing details. "
            + behaviour.message
        )
        return self._error_body(429, message, headers, details)

    def error(
        self, status: int, message: str, headers: dict[str, str], request: RecordedRequest
    ) -> Response:
        return self._error_body(status, message, headers, [])

    @staticmethod
    def _error_body(
        status: int, message: str, headers: dict[str, str], details: list[dict[str, Any]]
    ) -> Response:
        kind = {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED",
            503: "UNAVAILABLE",
            504: "DEADLINE_EXCEEDED",
        }.get(status, "INTERNAL")
        error: dict[str, Any] = {"code": status, "message": message, "status": kind}
        if details:
            error["details"] = details
        return Response.json(status, {"error": error}, headers)


class FakeSearchEndpoint(FakeServer):
    """jobyard's search/scraper endpoint (the contract in
    :mod:`worker.providers.search_endpoint`): ``POST <base_url>`` with
    ``{source, query, language, country, ...}`` → ``{text, citations}``; errors are
    ``{"error": message}``; :class:`Refusal` is ``{"text": "", "refusal": message}``. It is
    ours, so it takes no credential and always searches.

    ``base_url`` is the full endpoint URL (``<root>/answer``).
    """

    prefix = "/answer"

    def serves(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and request.path == self.prefix

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        return Response.json(200, {"text": behaviour.text, "citations": list(behaviour.citations)})

    def truncated(self, behaviour: Truncated, request: RecordedRequest) -> Response:
        return self.reply(Reply(behaviour.text), request)

    def refusal(self, behaviour: Refusal, request: RecordedRequest) -> Response:
        return Response.json(200, {"text": "", "citations": [], "refusal": behaviour.message})

    def empty(self, request: RecordedRequest) -> Response:
        return Response.json(200, {"text": "", "citations": []})

    def error(
        self, status: int, message: str, headers: dict[str, str], request: RecordedRequest
    ) -> Response:
        return Response.json(status, {"error": message}, headers)


class FakeGoogleOAuth(FakeServer):
    """Google's OAuth 2.0 token endpoint for service accounts (``POST /token`` with a
    ``jwt-bearer`` grant): checks the assertion's RS256 signature against the service
    account's public key and issues a short-lived access token (``expires_in`` seconds,
    one hour at Google). ``issued`` lists the tokens handed out; a :class:`FakeDeepSeek`
    given the same set (``deepseek.tokens = oauth.issued``) accepts exactly those."""

    def __init__(self, public_key_pem: bytes, *, expires_in: int = 3600, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.public_key_pem = public_key_pem
        self.expires_in = expires_in
        self.issued: set[str] = set()

    def serves(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and request.path == "/token"

    def side_route(self, request: RecordedRequest) -> Response | None:
        if not self.serves(request):
            return None

        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Response.json(400, {"error": "unsupported_grant_type"})
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self.public_key_pem,
                algorithms=["RS256"],
                audience="https://oauth2.googleapis.com/token",  # Google's, wherever served
            )
        except jwt.PyJWTError as exc:
            return Response.json(400, {"error": "invalid_grant", "error_description": str(exc)})
        if "https://www.googleapis.com/auth/cloud-platform" not in str(claims.get("scope")):
            return Response.json(400, {"error": "invalid_scope"})
        token = f"ya29.{secrets.token_urlsafe(32)}"
        self.issued.add(token)
        body = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return Response.json(200, body)
