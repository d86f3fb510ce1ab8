"""Google Gemini (``gemini-*``) through the official google-genai SDK's ``generate_content``.

The SDK's async client (``client.aio``) is used. ``GEMINI_API_KEY``, ``GEMINI_BASE_URL``
(default the SDK's,
``https://generativelanguage.googleapis.com``); requests go to
``<base>/v1beta/models/{model}:generateContent`` (v1beta pinned: the SDK's own default moved
to v1, which lacks preview models). The SDK's retries are off (``HttpRetryOptions(attempts=1)``).
A blocked prompt (``promptFeedback.blockReason``) or a candidate stopped for safety
(``finishReason`` SAFETY, RECITATION, PROHIBITED_CONTENT...) is a non-retryable refusal.
Citations come from the candidate's grounding metadata (``groundingChunks[].web.uri``) and
citation metadata when present. A 429's wait comes from its ``google.rpc.RetryInfo``.
The SDK is imported on first use.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared.settings import Settings
from worker.providers import errors
from worker.providers.base import AiAnswer, AiRequest, ProviderError
from worker.providers.common import fingerprint, shared_client, system_prompt, unique_urls

if TYPE_CHECKING:
    from google import genai

API_VERSION = "v1beta"

# Model ids of the trigger enum → Gemini's model names (unlisted ids are sent as-is).
API_MODEL_NAMES: dict[str, str] = {
    "gemini-2.5-flash": "gemini-2.5-flash",
    "gemini-3-flash-preview": "gemini-3-flash-preview",
}

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
        self.api_key = settings.gemini_api_key
        self.base_url = settings.gemini_base_url
        self.timeout = settings.provider_timeout_seconds

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

    def prepare(self) -> None:
        """Build the client now (see :meth:`AiProvider.prepare`)."""
        self._client()

    async def answer(self, request: AiRequest) -> AiAnswer:
        from google.genai import errors as genai_errors
        from google.genai import types

        if not self.api_key:
            raise ProviderError(f"{self.name}: GEMINI_API_KEY is not set", retryable=False)
        client = self._client()
        try:
            response = await client.aio.models.generate_content(
                model=API_MODEL_NAMES.get(request.model, request.model),
                contents=request.query,
                config=types.GenerateContentConfig(system_instruction=system_prompt(request)),
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
        return self.to_answer(response, request)

    def to_answer(self, response: Any, request: AiRequest) -> AiAnswer:
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
        finish_reason = _name(candidate.finish_reason)
        if finish_reason in REFUSAL_FINISH_REASONS:
            raise errors.refused(self.name, f"finish_reason {finish_reason}")
        parts = (candidate.content.parts if candidate.content else None) or []
        text = "".join(p.text for p in parts if isinstance(p.text, str) and not p.thought)
        if not text.strip():
            raise errors.empty_answer(self.name, f"finish_reason {finish_reason or 'none'}")
        return AiAnswer(
            text=text,
            provider=self.name,
            model=request.model,
            citations=self.citations(candidate),
        )

    @staticmethod
    def citations(candidate: Any) -> list[str]:
        urls: list[Any] = []
        grounding = candidate.grounding_metadata
        for chunk in (grounding.grounding_chunks if grounding else None) or []:
            web = getattr(chunk, "web", None)
            urls.append(getattr(web, "uri", None))
        cited = candidate.citation_metadata
        for citation in (cited.citations if cited else None) or []:
            urls.append(citation.uri)
        return unique_urls(urls)
