"""Fixtures of the provider tests: a clean provider environment and one harness per vendor.

Every test starts with no provider credentials in the environment (whatever the machine
has), a 2 s provider timeout, and fresh settings; afterwards the registry forgets its
providers. One fake per vendor serves the whole session (emptied before each test), so
the SDK clients cached per base URL are reused from test to test, as in a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.settings import get_settings, reset_settings_cache
from tests.fakes import (
    FAKE_API_KEY,
    FakeAnthropic,
    FakeDeepSeek,
    FakeGemini,
    FakeOpenAI,
    FakePerplexity,
    FakeSearchEndpoint,
    FakeServer,
    RecordedRequest,
    Reply,
)
from worker.providers.anthropic_provider import AnthropicProvider
from worker.providers.base import AiAnswer, AiProvider, AiRequest
from worker.providers.common import aclose_clients
from worker.providers.gemini import GeminiProvider
from worker.providers.openai_compatible import DeepSeekProvider, OpenAIProvider, PerplexityProvider
from worker.providers.registry import provider_for
from worker.providers.search_endpoint import SearchEndpointProvider
from worker.runtime.loop import EventLoopThread

PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "GEMINI_API_KEY",
    "GEMINI_BASE_URL",
    "GOOGLE_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_API_VERSION",
    "PERPLEXITY_API_KEY",
    "PERPLEXITY_BASE_URL",
    "DEEPSEEK_API_KEY",
    "DEEPSEEK_BASE_URL",
    "SEARCH_ENDPOINT_URL",
    "PROVIDER_TIMEOUT_SECONDS",
)

API_KEY = FAKE_API_KEY


@pytest.fixture(autouse=True)
def provider_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No provider configured but what the test sets; a short timeout; fresh settings."""
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"JOBYARD_{name}", raising=False)
    monkeypatch.setenv("JOBYARD_PROVIDER_TIMEOUT_SECONDS", "2")
    reset_settings_cache()
    provider_for.cache_clear()
    yield
    provider_for.cache_clear()
    reset_settings_cache()  # the next get_settings() reads the restored environment


@dataclass(frozen=True)
class Vendor:
    """How to point one provider at its fake, and where the query's locale lands."""

    id: str
    make_fake: Callable[[], FakeServer]
    provider_class: type
    model: str
    env: Callable[[FakeServer], dict[str, str]]
    locale_text: Callable[[RecordedRequest], str]  # must contain language and country
    provider_name: str
    searches: bool = True  # has a web search the request can ask for


def _search_locale(request: RecordedRequest) -> str:
    body = request.json or {}
    return f"language {body.get('language')} country {body.get('country')}"


VENDORS = [
    Vendor(
        "openai",
        FakeOpenAI,
        OpenAIProvider,
        "gpt-4.1-mini",
        lambda f: {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": f.base_url},
        FakeOpenAI.system_prompt,
        "openai",
    ),
    Vendor(
        "perplexity",
        FakePerplexity,
        PerplexityProvider,
        "sonar",
        lambda f: {"PERPLEXITY_API_KEY": API_KEY, "PERPLEXITY_BASE_URL": f.base_url},
        FakeOpenAI.system_prompt,
        "perplexity",
    ),
    Vendor(
        "deepseek",
        FakeDeepSeek,
        DeepSeekProvider,
        "deepseek-v3.2-maas",
        lambda f: {"DEEPSEEK_API_KEY": API_KEY, "DEEPSEEK_BASE_URL": f.base_url},
        FakeOpenAI.system_prompt,
        "deepseek",
        searches=False,
    ),
    Vendor(
        "anthropic",
        FakeAnthropic,
        AnthropicProvider,
        "claude-haiku-4-5",
        lambda f: {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": f.base_url},
        FakeAnthropic.system_prompt,
        "anthropic",
    ),
    Vendor(
        "gemini",
        FakeGemini,
        GeminiProvider,
        "gemini-2.5-flash",
        lambda f: {"GEMINI_API_KEY": API_KEY, "GEMINI_BASE_URL": f.base_url},
        FakeGemini.system_prompt,
        "google-generative-ai",
    ),
    Vendor(
        "search-endpoint",
        FakeSearchEndpoint,
        SearchEndpointProvider,
        "ai-overview",
        lambda f: {"JOBYARD_SEARCH_ENDPOINT_URL": f.base_url},
        _search_locale,
        "ai-overview",
    ),
]


class Harness:
    """A vendor's fake, running, with the environment pointing its provider at it."""

    def __init__(self, vendor: Vendor, fake: FakeServer, monkeypatch: pytest.MonkeyPatch):
        self.vendor = vendor
        self.fake = fake
        self.monkeypatch = monkeypatch
        self.use(fake)

    def use(self, fake: FakeServer) -> None:
        """Point the provider at ``fake`` (another instance of the vendor's fake)."""
        for name, value in self.vendor.env(fake).items():
            self.monkeypatch.setenv(name, value)
        reset_settings_cache()

    def use_settings(self) -> None:
        """Re-read the settings after the test changed the environment."""
        reset_settings_cache()

    def set_timeout(self, seconds: float) -> None:
        self.monkeypatch.setenv("JOBYARD_PROVIDER_TIMEOUT_SECONDS", str(seconds))
        reset_settings_cache()

    def provider(self) -> AiProvider:
        """A provider built from the current settings (as the registry would)."""
        provider: AiProvider = self.vendor.provider_class(get_settings())
        return provider

    def request(self, **overrides: Any) -> AiRequest:
        fields: dict[str, Any] = {
            "model": self.vendor.model,
            "query": "best crm for startups",
            "language": "en",
            "country": "US",
            "seed": "query-1:model:1",
        }
        fields.update(overrides)
        return AiRequest(**fields)

    def ask(self, **overrides: Any) -> AiAnswer:
        return call(self.provider(), self.request(**overrides))


# One event loop for the whole session, in a thread of its own, as in a worker process: the
# async clients a provider caches belong to it and are reused from test to test.
LOOP = EventLoopThread("provider-tests")


def call(provider: AiProvider, request: AiRequest) -> AiAnswer:
    """``await provider.answer(request)`` on the session's loop, from a test."""

    async def answer() -> AiAnswer:
        provider.prepare()
        return await provider.answer(request)

    return LOOP.submit(answer()).result(60)


@pytest.fixture(scope="session")
def running_fakes() -> Iterator[dict[str, FakeServer]]:
    """One running fake per vendor for the session; the SDK clients are closed at the end."""
    fakes = {spec.id: spec.make_fake().start() for spec in VENDORS}
    yield fakes
    LOOP.submit(aclose_clients()).result(30)
    for fake in fakes.values():
        fake.stop()


VENDOR_BY_ID = {spec.id: spec for spec in VENDORS}


@pytest.fixture
def harness_for(
    monkeypatch: pytest.MonkeyPatch, running_fakes: dict[str, FakeServer]
) -> Iterator[Callable[[str], Harness]]:
    """``harness_for("openai")``: one vendor's harness, for vendor-specific tests."""
    used: list[FakeServer] = []

    def make(vendor_id: str) -> Harness:
        fake = running_fakes[vendor_id]
        fake.reset()
        fake.default = Reply()
        used.append(fake)
        return Harness(VENDOR_BY_ID[vendor_id], fake, monkeypatch)

    yield make
    for fake in used:
        fake.reset()


@pytest.fixture(params=VENDORS, ids=[v.id for v in VENDORS])
def vendor(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    running_fakes: dict[str, FakeServer],
) -> Iterator[Harness]:
    """Each provider in turn, against its (emptied) fake."""
    spec: Vendor = request.param
    fake = running_fakes[spec.id]
    fake.reset()
    fake.default = Reply()
    yield Harness(spec, fake, monkeypatch)
    fake.reset()
