"""The vendor fakes: each speaks one API's wire format over :class:`FakeServer`."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from tests.fakes.behaviours import RateLimited, Refusal, Reply
from tests.fakes.server import FakeServer, RecordedRequest, Response


def _requested_model(request: RecordedRequest, fallback: str) -> str:
    body = request.json if isinstance(request.json, dict) else {}
    return str(body.get("model") or fallback)


class FakeOpenAI(FakeServer):
    """OpenAI Chat Completions (``POST <base_url>/chat/completions``).

    ``base_url`` ends in ``/v1`` like the real one. A :class:`Reply`'s citations become
    ``url_citation`` annotations of the message. :class:`Refusal` sends the ``refusal``
    field (``kind="content_filter"``: an empty message with ``finish_reason:
    content_filter``). Also serves any OpenAI-compatible API (DeepSeek) through
    ``prefix``.
    """

    prefix = "/v1"

    def __init__(self, *, prefix: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if prefix is not None:
            self.prefix = prefix

    def serves(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and request.path == f"{self.prefix}/chat/completions"

    @staticmethod
    def system_prompt(request: RecordedRequest) -> str:
        """The system message the client sent."""
        messages = (request.json or {}).get("messages", [])
        return "\n".join(
            str(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
        )

    def completion(
        self,
        request: RecordedRequest,
        message: dict[str, Any],
        finish_reason: str = "stop",
        **extra: Any,
    ) -> Response:
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": _requested_model(request, "gpt-4.1-mini"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "refusal": None, **message},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46},
            **extra,
        }
        return Response.json(200, payload)

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        annotations = [
            {
                "type": "url_citation",
                "url_citation": {"url": url, "title": url, "start_index": 0, "end_index": 0},
            }
            for url in behaviour.citations
        ]
        return self.completion(
            request, {"content": behaviour.text, "annotations": annotations}, "stop"
        )

    def refusal(self, behaviour: Refusal, request: RecordedRequest) -> Response:
        if behaviour.kind == "content_filter":
            return self.completion(request, {"content": None}, "content_filter")
        return self.completion(request, {"content": None, "refusal": behaviour.message})

    def empty(self, request: RecordedRequest) -> Response:
        return self.completion(request, {"content": ""})

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


class FakePerplexity(FakeOpenAI):
    """Perplexity Sonar: OpenAI's format at ``<root>/chat/completions`` (no ``/v1``), with
    the citations at the top level (``citations`` and ``search_results[].url``)."""

    prefix = ""

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        results = [
            {"title": f"Result {i}", "url": url, "date": "2025-01-01"}
            for i, url in enumerate(behaviour.citations, start=1)
        ]
        return self.completion(
            request,
            {"content": behaviour.text},
            "stop",
            citations=list(behaviour.citations),
            search_results=results,
        )


class FakeAnthropic(FakeServer):
    """Anthropic Messages (``POST <base_url>/v1/messages``). A :class:`Reply`'s citations
    become ``web_search_result_location`` citations of its text block; :class:`Refusal`
    is ``stop_reason: refusal``; 429 uses ``rate_limit_error``, 529 ``overloaded_error``."""

    def serves(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and request.path == "/v1/messages"

    @staticmethod
    def system_prompt(request: RecordedRequest) -> str:
        system = (request.json or {}).get("system", "")
        if isinstance(system, list):
            return "\n".join(str(block.get("text", "")) for block in system)
        return str(system)

    def message(
        self, request: RecordedRequest, content: list[dict[str, Any]], stop_reason: str
    ) -> Response:
        payload = {
            "id": f"msg_{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": _requested_model(request, "claude-haiku-4-5"),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 34},
        }
        return Response.json(200, payload, {"request-id": f"req_{uuid.uuid4().hex[:12]}"})

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        block: dict[str, Any] = {"type": "text", "text": behaviour.text}
        if behaviour.citations:
            block["citations"] = [
                {
                    "type": "web_search_result_location",
                    "url": url,
                    "title": url,
                    "encrypted_index": "x",
                    "cited_text": behaviour.text[:20],
                }
                for url in behaviour.citations
            ]
        return self.message(request, [block], "end_turn")

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


class FakeGemini(FakeServer):
    """Gemini API ``generateContent`` (``POST <base_url>/v1beta/models/{model}:generateContent``).

    A :class:`Reply`'s citations become ``groundingMetadata.groundingChunks[].web.uri``.
    :class:`Refusal` blocks the prompt (``promptFeedback.blockReason``), or with
    ``kind="safety"`` ends the candidate with ``finishReason: SAFETY``. A
    :class:`RateLimited` 429 carries its delay as a ``google.rpc.RetryInfo`` detail (as the
    real API does) besides the headers.
    """

    def serves(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and _GEMINI_PATH.match(request.path) is not None

    @staticmethod
    def model_of(request: RecordedRequest) -> str:
        match = _GEMINI_PATH.match(request.path)
        return match.group("model") if match else ""

    @staticmethod
    def system_prompt(request: RecordedRequest) -> str:
        instruction = (request.json or {}).get("systemInstruction") or {}
        return "\n".join(str(p.get("text", "")) for p in instruction.get("parts", []))

    def generated(self, request: RecordedRequest, **payload: Any) -> Response:
        payload.setdefault(
            "usageMetadata",
            {"promptTokenCount": 12, "candidatesTokenCount": 34, "totalTokenCount": 46},
        )
        payload.setdefault("modelVersion", self.model_of(request))
        payload.setdefault("responseId", uuid.uuid4().hex[:16])
        return Response.json(200, payload)

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": [{"text": behaviour.text}]},
            "finishReason": "STOP",
            "index": 0,
        }
        if behaviour.citations:
            candidate["groundingMetadata"] = {
                "groundingChunks": [
                    {"web": {"uri": url, "title": f"source {i}"}}
                    for i, url in enumerate(behaviour.citations)
                ],
                "webSearchQueries": ["query"],
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
        details = []
        if behaviour.retry_after is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{behaviour.retry_after}s",
                }
            )
        return self._error_body(429, behaviour.message, headers, details)

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
    ``{"error": message}``; :class:`Refusal` is ``{"text": "", "refusal": message}``.

    ``base_url`` is the full endpoint URL (``<root>/answer``).
    """

    prefix = "/answer"

    def serves(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and request.path == self.prefix

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        return Response.json(200, {"text": behaviour.text, "citations": list(behaviour.citations)})

    def refusal(self, behaviour: Refusal, request: RecordedRequest) -> Response:
        return Response.json(200, {"text": "", "citations": [], "refusal": behaviour.message})

    def empty(self, request: RecordedRequest) -> Response:
        return Response.json(200, {"text": "", "citations": []})

    def error(
        self, status: int, message: str, headers: dict[str, str], request: RecordedRequest
    ) -> Response:
        return Response.json(status, {"error": message}, headers)
