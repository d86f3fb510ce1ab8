"""Web search on every provider that has it, and what a visibility product keeps of an
answer: cited and retrieved sources with their real domains, the final text only, usage,
the model served, and no truncated answer counted a success. Each against its vendor's
fake, which renders a search only when the request asked for one."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.fakes import FAKE_API_KEY, FakeAnthropic, FakeGemini, FakeOpenAI, RateLimited, Reply
from tests.fakes.behaviours import Truncated
from tests.fakes.server import RecordedRequest
from tests.providers.conftest import Harness
from worker.providers.base import ProviderError, Source, WebSearch
from worker.providers.errors import DAILY_QUOTA_WAIT_SECONDS

HarnessFor = Callable[[str], Harness]
SEARCHING = ["openai", "anthropic", "gemini", "perplexity"]

CITED = ("https://www.g2.com/categories/crm", "https://acme.example/pricing?plan=pro")
ONLY_RETRIEVED = ("https://news.example.org/crm-2026",)
ANSWER = "Acme CRM is the usual pick for startups. Globex is a cheaper alternative."


def search_tool(vendor: str, request: RecordedRequest) -> dict[str, object] | None:
    """The search tool (or option) the request carried, in the vendor's words."""
    body = request.json
    if vendor == "perplexity":
        return None if body.get("disable_search") else body.get("web_search_options", {})
    for tool in body.get("tools") or []:
        if vendor == "openai" and tool.get("type") == "web_search":
            return dict(tool)
        if vendor == "anthropic" and tool.get("type") == "web_search_20250305":
            return dict(tool)
        if vendor == "gemini" and "googleSearch" in tool:
            return dict(tool)
    return None


def ask(harness: Harness, **request: object) -> tuple[object, RecordedRequest]:
    harness.fake.script([Reply(ANSWER, citations=CITED, retrieved=ONLY_RETRIEVED)])
    answer = harness.ask(**request)
    (received,) = harness.fake.requests
    return answer, received


@pytest.mark.parametrize("vendor", SEARCHING)
def test_search_is_asked_for_in_the_querys_country(harness_for: HarnessFor, vendor: str) -> None:
    harness = harness_for(vendor)
    answer, received = ask(harness, country="de", language="de")
    tool = search_tool(vendor, received)
    assert tool is not None, received.json
    if vendor == "openai":
        assert tool["user_location"] == {"type": "approximate", "country": "DE"}
        assert received.json["include"] == ["web_search_call.action.sources"]
    elif vendor == "anthropic":
        assert tool["name"] == "web_search"
        assert tool["user_location"] == {"type": "approximate", "country": "DE"}
        assert isinstance(tool["max_uses"], int) and tool["max_uses"] >= 1
    elif vendor == "perplexity":
        assert tool == {"user_location": {"country": "DE"}}
    else:  # Gemini's search takes the language; the country is in the instruction
        retrieval = received.json["toolConfig"]["retrievalConfig"]  # proto JSON: either case
        assert retrieval.get("languageCode", retrieval.get("language_code")) == "de"
        assert "country de" in FakeGemini.system_prompt(received)
    assert answer.web_search is WebSearch.ON  # type: ignore[attr-defined]


@pytest.mark.parametrize("vendor", SEARCHING)
def test_cited_and_retrieved_sources_name_the_real_pages(
    harness_for: HarnessFor, vendor: str
) -> None:
    answer, _ = ask(harness_for(vendor))
    cited: list[Source] = answer.cited  # type: ignore[attr-defined]
    retrieved: list[Source] = answer.retrieved  # type: ignore[attr-defined]
    assert [s.url for s in cited] == list(CITED)  # in order of citation, no tracking tags
    assert [s.domain for s in cited] == ["g2.com", "acme.example"]
    assert [s.url for s in retrieved] == [*CITED, *ONLY_RETRIEVED]
    assert all(s.title for s in cited), cited
    assert not any("127.0.0.1" in (s.url or "") for s in retrieved)  # no redirect host


@pytest.mark.parametrize("vendor", SEARCHING)
def test_the_answer_is_the_final_text_only(harness_for: HarnessFor, vendor: str) -> None:
    """No "I'll search..." preamble, no inline link or [n] mark left in the text."""
    answer, _ = ask(harness_for(vendor))
    assert answer.text == ANSWER  # type: ignore[attr-defined]


@pytest.mark.parametrize("vendor", SEARCHING)
def test_without_search_the_bare_model_answers_with_no_sources(
    harness_for: HarnessFor, vendor: str
) -> None:
    harness = harness_for(vendor)
    answer, received = ask(harness, web_search=False)
    assert search_tool(vendor, received) is None
    assert answer.web_search is WebSearch.OFF  # type: ignore[attr-defined]
    assert answer.cited == [] and answer.retrieved == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("vendor", SEARCHING)
def test_search_can_be_switched_off_per_provider(
    harness_for: HarnessFor, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = harness_for(vendor)
    others = [p for p in ("openai", "anthropic", "google-generative-ai", "perplexity")]
    others.remove(harness.vendor.provider_name)
    monkeypatch.setenv("JOBYARD_WEB_SEARCH_PROVIDERS", str(others).replace("'", '"'))
    harness.use_settings()
    answer, received = ask(harness)
    assert search_tool(vendor, received) is None
    assert answer.web_search is WebSearch.OFF  # type: ignore[attr-defined]


def test_deepseek_says_it_has_no_search(harness_for: HarnessFor) -> None:
    deepseek = harness_for("deepseek")
    answer, received = ask(deepseek)
    assert "tools" not in received.json
    assert answer.web_search is WebSearch.UNAVAILABLE  # type: ignore[attr-defined]
    assert answer.cited == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("vendor", [*SEARCHING, "deepseek"])
def test_usage_request_id_and_served_model_are_recorded(
    harness_for: HarnessFor, vendor: str
) -> None:
    answer, _ = ask(harness_for(vendor))
    served = answer.served  # type: ignore[attr-defined]
    usage = served.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0, usage
    assert usage.search_calls == (0 if vendor == "deepseek" else 1)
    assert served.request_id
    expected = {
        "openai": "gpt-4.1-mini-2025-04-14",  # the dated snapshot behind the alias
        "anthropic": "claude-haiku-4-5-20251001",
        "gemini": "gemini-2.5-flash",
        "perplexity": "sonar",
        "deepseek": "deepseek-ai/deepseek-v3.2-maas",
    }[vendor]
    assert served.model == expected


@pytest.mark.parametrize("vendor", [*SEARCHING, "deepseek"])
def test_a_truncated_answer_is_a_failure_not_a_success(
    harness_for: HarnessFor, vendor: str
) -> None:
    harness = harness_for(vendor)
    harness.fake.script([Truncated()])
    with pytest.raises(ProviderError) as caught:
        harness.ask()
    assert caught.value.retryable is False
    assert "incomplete" in str(caught.value)
    served = caught.value.served  # billed all the same: its usage is kept for the cost
    assert served is not None and served.usage.output_tokens > 0


def test_anthropic_paused_turn_is_asked_again(harness_for: HarnessFor) -> None:
    anthropic = harness_for("anthropic")
    anthropic.fake.script([Truncated(kind="pause_turn")])
    with pytest.raises(ProviderError) as caught:
        anthropic.ask()
    assert caught.value.retryable is True and "pause_turn" in str(caught.value)


def test_gemini_unresolvable_redirect_keeps_the_domain_not_the_redirect(
    harness_for: HarnessFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    gemini = harness_for("gemini")
    assert isinstance(gemini.fake, FakeGemini)
    monkeypatch.setattr(gemini.fake, "redirects", _ForgetfulDict())  # links lead nowhere
    gemini.fake.script([Reply(ANSWER, citations=CITED)])
    answer = gemini.ask()
    assert [s.domain for s in answer.cited] == ["g2.com", "acme.example"]
    assert all(s.url is None and s.redirect_url for s in answer.cited), answer.cited


class _ForgetfulDict(dict[str, str]):
    def __setitem__(self, key: str, value: str) -> None:
        pass


@pytest.mark.parametrize("vendor", ["openai", "gemini"])
def test_a_daily_quota_waits_longer_than_a_per_minute_limit(
    harness_for: HarnessFor, vendor: str
) -> None:
    harness = harness_for(vendor)
    harness.fake.script([RateLimited(retry_after="7"), RateLimited(retry_after="7", window="day")])
    with pytest.raises(ProviderError) as minute:
        harness.ask()
    with pytest.raises(ProviderError) as day:
        harness.ask()
    assert minute.value.retryable and minute.value.retry_after == 7.0
    assert day.value.retryable and day.value.retry_after == DAILY_QUOTA_WAIT_SECONDS


# -- the fakes refuse what the vendors refuse ---------------------------------------


def post(url: str, body: dict[str, object], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, json=body, headers=headers, timeout=5)


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"authorization": "Bearer sk-wrong"}, 401)],
)
def test_fake_openai_checks_the_credential(headers: dict[str, str], status: int) -> None:
    with FakeOpenAI() as fake:
        fake.script([Reply()])
        response = post(fake.base_url + "/responses", {"model": "gpt-4.1-mini"}, headers)
        assert response.status_code == status
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert fake.pending == 1  # a rejected request consumes no behaviour


def test_fake_openai_rejects_a_shut_down_model() -> None:
    with FakeOpenAI() as fake:
        auth = {"authorization": f"Bearer {FAKE_API_KEY}"}
        response = post(fake.base_url + "/responses", {"model": "gpt-5-chat-latest"}, auth)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("drop", "status", "words"),
    [
        ("x-api-key", 401, "x-api-key"),
        ("anthropic-version", 400, "anthropic-version"),
        ("max_tokens", 400, "max_tokens"),
        ("model", 404, "model"),
    ],
)
def test_fake_anthropic_refuses_what_the_api_refuses(drop: str, status: int, words: str) -> None:
    with FakeAnthropic() as fake:
        headers = {"x-api-key": FAKE_API_KEY, "anthropic-version": "2023-06-01"}
        body: dict[str, object] = {
            "model": "claude-haiku-4-5",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
        }
        headers.pop(drop, None)
        if drop == "max_tokens":
            del body["max_tokens"]
        if drop == "model":
            body["model"] = "claude-3-nonexistent"
        response = post(fake.url + "/v1/messages", body, headers)
        assert response.status_code == status
        assert response.json()["type"] == "error" and words in response.json()["error"]["message"]
        complete = post(
            fake.url + "/v1/messages",
            {**body, "model": "claude-haiku-4-5", "max_tokens": 100},
            {"x-api-key": FAKE_API_KEY, "anthropic-version": "2023-06-01"},
        )
        assert complete.status_code == 200


def test_fake_gemini_checks_key_and_model() -> None:
    with FakeGemini() as fake:
        url = fake.url + "/v1beta/models/{}:generateContent"
        body = {"contents": [{"parts": [{"text": "hi"}]}]}
        assert post(url.format("gemini-2.5-flash"), body, {}).status_code == 403
        wrong = {"x-goog-api-key": "nope"}
        assert post(url.format("gemini-2.5-flash"), body, wrong).status_code == 400
        key = {"x-goog-api-key": FAKE_API_KEY}
        assert post(url.format("gemini-1.0-pro"), body, key).status_code == 404
        assert post(url.format("gemini-2.5-flash"), body, key).status_code == 200
