"""What only one vendor does: model names, request fields, its own error and refusal shapes."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from tests.fakes import (
    Fail,
    FakeDeepSeek,
    FakeGemini,
    FakeGoogleOAuth,
    FakeOpenAI,
    Raw,
    Refusal,
    Reply,
)
from tests.providers.conftest import API_KEY, LOOP, Harness
from worker.providers.base import ProviderError
from worker.providers.openai_compatible import OpenAIProvider

HarnessFor = Callable[[str], Harness]
AUTH = {"authorization": f"Bearer {API_KEY}"}


def raises(harness: Harness, **request: object) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        harness.ask(**request)
    return caught.value


# -- OpenAI ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "sent"),
    [("chat-latest", "gpt-5.5-2026-04-23"), ("gpt-5-mini", "gpt-5.4-mini-2026-03-17")],
)
def test_openai_request(harness_for: HarnessFor, model: str, sent: str) -> None:
    """The Responses API, with the retired ids remapped to their successors' snapshots."""
    openai = harness_for("openai")
    openai.ask(model=model, query="which crm?")
    (received,) = openai.fake.requests
    assert received.path == "/v1/responses"
    assert received.json["model"] == sent
    assert received.json["input"] == "which crm?"
    assert "language en" in received.json["instructions"]
    assert received.json["max_output_tokens"] > 0
    assert received.headers["x-stainless-retry-count"] == "0"


def test_the_provider_sends_the_vendor_model_the_request_was_resolved_to(
    harness_for: HarnessFor,
) -> None:
    """The model is resolved once, when the execution is planned; the provider sends what
    the request carries and does not look the public id up again (an execution planned
    before a remapping keeps the vendor model it was planned with)."""
    openai = harness_for("openai")
    openai.ask(model="gpt-4.1-mini", provider="openai", vendor_model="gpt-5.5-2026-04-23")
    (received,) = openai.fake.requests
    assert received.json["model"] == "gpt-5.5-2026-04-23"


def test_openai_content_filter_is_a_refusal(harness_for: HarnessFor) -> None:
    openai = harness_for("openai")
    openai.fake.script([Refusal(kind="content_filter")])
    error = raises(openai)
    assert error.retryable is False
    assert "content filter" in str(error)


def test_openai_out_of_quota_429_is_not_retryable(harness_for: HarnessFor) -> None:
    openai = harness_for("openai")
    quota = {
        "error": {
            "message": "You exceeded your current quota",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    }
    openai.fake.script([Raw(429, quota, {"Retry-After": "20"})])
    error = raises(openai)
    assert error.retryable is False
    assert error.retry_after is None
    assert "insufficient_quota" in str(error)


def test_retry_after_as_http_date(harness_for: HarnessFor) -> None:
    openai = harness_for("openai")
    when = datetime.now(UTC) + timedelta(seconds=30)
    body = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}
    openai.fake.script([Raw(429, body, {"Retry-After": format_datetime(when, usegmt=True)})])
    error = raises(openai)
    assert error.retryable is True
    assert error.retry_after is not None and 27 < error.retry_after <= 30


def test_x_should_retry_false_wins_over_a_5xx(harness_for: HarnessFor) -> None:
    openai = harness_for("openai")
    openai.fake.script([Fail(500, "permanent", headers={"x-should-retry": "false"})])
    assert raises(openai).retryable is False


def test_one_client_serves_every_model_at_once(harness_for: HarnessFor) -> None:
    """Every model of the vendor shares one client and its pool, calls in flight together."""
    openai = harness_for("openai")
    first, second = openai.provider(), openai.provider()
    assert isinstance(first, OpenAIProvider) and isinstance(second, OpenAIProvider)
    models = ["gpt-4.1-mini", "gpt-5-mini", "chat-latest", "gpt-5-chat-latest"] * 4

    async def ask_all() -> tuple[bool, list[str]]:
        same = first._client() is second._client()
        answers = await asyncio.gather(*(first.answer(openai.request(model=m)) for m in models))
        return same, [a.model for a in answers]

    same, answered = LOOP.submit(ask_all()).result(60)
    assert same and answered == models
    assert len(openai.fake.requests) == len(models)


# -- Perplexity -----------------------------------------------------------------------


def test_perplexity_sends_the_country_to_its_search(harness_for: HarnessFor) -> None:
    perplexity = harness_for("perplexity")
    perplexity.ask(country="at", language="de")
    (received,) = perplexity.fake.requests
    assert received.path == "/chat/completions"
    assert received.json["model"] == "sonar"
    assert received.json["web_search_options"] == {"user_location": {"country": "AT"}}


def test_perplexity_citations_from_search_results_alone(harness_for: HarnessFor) -> None:
    perplexity = harness_for("perplexity")
    completion = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "sonar",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "See [1]."},
                "finish_reason": "stop",
            }
        ],
        "search_results": [{"title": "A", "url": "https://a.example/1"}, {"title": "B"}],
    }
    perplexity.fake.script([Raw(200, completion)])
    assert perplexity.ask().citations == ["https://a.example/1"]


# -- DeepSeek -------------------------------------------------------------------------


def test_deepseek_needs_its_base_url(
    harness_for: HarnessFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    deepseek = harness_for("deepseek")
    monkeypatch.delenv("DEEPSEEK_BASE_URL")
    deepseek.use_settings()
    error = raises(deepseek)
    assert error.retryable is False
    assert "DEEPSEEK_BASE_URL" in str(error)
    assert deepseek.fake.requests == []


def test_deepseek_model_name(harness_for: HarnessFor) -> None:
    deepseek = harness_for("deepseek")
    deepseek.ask()
    (received,) = deepseek.fake.requests
    assert received.path == "/chat/completions"
    assert received.json["model"] == "deepseek-ai/deepseek-v3.2-maas"


# -- Anthropic ------------------------------------------------------------------------


def test_anthropic_request(harness_for: HarnessFor) -> None:
    anthropic = harness_for("anthropic")
    anthropic.ask(language="fr", country="CA")
    (received,) = anthropic.fake.requests
    assert received.path == "/v1/messages"
    assert received.json["model"] == "claude-haiku-4-5-20251001"
    assert received.json["max_tokens"] > 0
    assert "language fr" in received.json["system"] and "country CA" in received.json["system"]
    assert received.json["messages"] == [{"role": "user", "content": "best crm for startups"}]


def test_anthropic_overloaded_529_is_retryable(harness_for: HarnessFor) -> None:
    anthropic = harness_for("anthropic")
    anthropic.fake.script([Fail(529, "Overloaded")])
    error = raises(anthropic)
    assert error.retryable is True
    assert "529" in str(error) and "overloaded_error" in str(error)


def test_anthropic_refusal_without_text(harness_for: HarnessFor) -> None:
    anthropic = harness_for("anthropic")
    anthropic.fake.script([Refusal(message="")])
    error = raises(anthropic)
    assert error.retryable is False
    assert "refusal" in str(error)


# -- Gemini ---------------------------------------------------------------------------


def test_gemini_request(harness_for: HarnessFor) -> None:
    gemini = harness_for("gemini")
    gemini.ask(model="gemini-3-flash-preview", language="ja", country="JP")
    (received,) = gemini.fake.requests
    assert received.path == "/v1beta/models/gemini-3-flash-preview:generateContent"
    assert FakeGemini.model_of(received) == "gemini-3-flash-preview"
    assert "language ja" in FakeGemini.system_prompt(received)
    assert received.json["contents"][0]["parts"][0]["text"] == "best crm for startups"


def test_gemini_safety_stop_is_a_refusal(harness_for: HarnessFor) -> None:
    gemini = harness_for("gemini")
    gemini.fake.script([Refusal(kind="safety")])
    error = raises(gemini)
    assert error.retryable is False
    assert "SAFETY" in str(error)


def test_gemini_blocked_prompt_is_a_refusal(harness_for: HarnessFor) -> None:
    gemini = harness_for("gemini")
    gemini.fake.script([Refusal()])
    error = raises(gemini)
    assert error.retryable is False
    assert "prompt blocked" in str(error)


def test_gemini_leaves_out_thoughts(harness_for: HarnessFor) -> None:
    gemini = harness_for("gemini")
    parts = [{"text": "Let me think...", "thought": True}, {"text": "Use Acme."}]
    body = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]}
    gemini.fake.script([Raw(200, body)])
    assert gemini.ask().text == "Use Acme."


# -- The search endpoint --------------------------------------------------------------


def test_search_endpoint_request(harness_for: HarnessFor) -> None:
    search = harness_for("search-endpoint")
    answer = search.ask(model="scp-ml-gemini", language="pt-BR", country="BR", attempt=2)
    (received,) = search.fake.requests
    assert received.method == "POST" and received.path == "/answer"
    assert received.headers["content-type"] == "application/json"
    assert received.json == {
        "source": "scp-ml-gemini",
        "query": "best crm for startups",
        "language": "pt-BR",
        "country": "BR",
        "requestId": "query-1:model:1",
        "attempt": 2,
    }
    assert answer.provider == "scraper" and answer.model == "scp-ml-gemini"


def test_search_endpoint_citations_may_be_objects(harness_for: HarnessFor) -> None:
    search = harness_for("search-endpoint")
    body = {"text": "Answer", "citations": [{"url": "https://a.example/"}, "https://b.example/"]}
    search.fake.script([Raw(200, body)])
    assert search.ask().citations == ["https://a.example/", "https://b.example/"]


def test_search_endpoint_without_text_is_malformed(harness_for: HarnessFor) -> None:
    search = harness_for("search-endpoint")
    search.fake.script([Raw(200, {"citations": []})])
    error = raises(search)
    assert error.retryable is True and "malformed" in str(error)


def test_search_endpoint_credentials_in_the_url(
    harness_for: HarnessFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    search = harness_for("search-endpoint")
    url = search.fake.base_url.replace("http://", "http://jobyard:s3cret@")
    monkeypatch.setenv("JOBYARD_SEARCH_ENDPOINT_URL", url)
    search.use_settings()
    search.ask()
    (received,) = search.fake.requests
    assert (
        received.headers["authorization"] == "Basic " + base64.b64encode(b"jobyard:s3cret").decode()
    )


def test_search_endpoint_unset(harness_for: HarnessFor, monkeypatch: pytest.MonkeyPatch) -> None:
    search = harness_for("search-endpoint")
    monkeypatch.delenv("JOBYARD_SEARCH_ENDPOINT_URL")
    search.use_settings()
    error = raises(search)
    assert error.retryable is False and "JOBYARD_SEARCH_ENDPOINT_URL" in str(error)


def test_fakes_answer_404_off_their_routes() -> None:
    """A wrong base URL shows up as the vendor's 404, not as a consumed behaviour."""
    import httpx

    with FakeOpenAI() as fake:
        fake.script([Reply("kept")])
        response = httpx.post(fake.url + "/chat/completions", json={}, headers=AUTH)
        assert response.status_code == 404
        assert fake.pending == 1


def test_deepseek_on_vertex_uses_refreshing_google_credentials(
    harness_for: HarnessFor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No static key: a service account's one-hour tokens, fetched and refreshed by
    google-auth through the SDK's Vertex provider (here tokens last 60 s, inside
    google-auth's refresh margin, so every call gets a fresh one)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    deepseek = harness_for("deepseek")
    assert isinstance(deepseek.fake, FakeDeepSeek)
    with FakeGoogleOAuth(public_pem, expires_in=60) as oauth:
        account = {
            "type": "service_account",
            "project_id": "jobyard-test",
            "private_key_id": "k1",
            "private_key": private_pem,
            "client_email": "jobyard@jobyard-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": f"{oauth.url}/token",
        }
        path = tmp_path / "service-account.json"
        path.write_text(json.dumps(account))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
        monkeypatch.delenv("DEEPSEEK_API_KEY")
        monkeypatch.setenv("JOBYARD_DEEPSEEK_VERTEX_AUTH", "true")
        monkeypatch.setattr(deepseek.fake, "tokens", oauth.issued)
        deepseek.use_settings()
        deepseek.ask()
        deepseek.ask()
    sent = [r.api_key for r in deepseek.fake.requests]
    assert len(sent) == 2 and len(set(sent)) == 2, sent  # refreshed between the calls
    assert set(sent) <= oauth.issued and deepseek.fake.api_key not in sent


def test_deepseek_on_vertex_without_credentials_fails_retryably(
    harness_for: HarnessFor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Google's token endpoint unreachable: a clear, retryable failure, nothing sent."""
    deepseek = harness_for("deepseek")
    account = {
        "type": "service_account",
        "project_id": "jobyard-test",
        "private_key_id": "k1",
        "private_key": "not a key",
        "client_email": "jobyard@jobyard-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    }
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.delenv("DEEPSEEK_API_KEY")
    monkeypatch.setenv("JOBYARD_DEEPSEEK_VERTEX_AUTH", "true")
    deepseek.use_settings()
    error = raises(deepseek)
    assert error.retryable is True and "Vertex Google authentication failed" in str(error)
    assert deepseek.fake.requests == []
