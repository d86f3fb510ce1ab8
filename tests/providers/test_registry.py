"""provider_for: the real provider once its key (or endpoint) is set, else the simulation."""

from __future__ import annotations

import pytest

from shared.ai_models import MODEL_PROVIDERS, PROVIDERS
from shared.settings import reset_settings_cache
from worker.providers.anthropic_provider import AnthropicProvider
from worker.providers.base import ProviderError
from worker.providers.gemini import GeminiProvider
from worker.providers.openai_compatible import DeepSeekProvider, OpenAIProvider, PerplexityProvider
from worker.providers.registry import REAL_PROVIDERS, provider_for
from worker.providers.search_endpoint import SearchEndpointProvider
from worker.providers.simulated import SimulatedProvider

EXPECTED = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "google-generative-ai": GeminiProvider,
    "perplexity": PerplexityProvider,
    "deepseek": DeepSeekProvider,
    "ai-overview": SearchEndpointProvider,
    "ai-mode": SearchEndpointProvider,
    "scraper": SearchEndpointProvider,
}


def configure(monkeypatch: pytest.MonkeyPatch, *, simulate: bool, **env: str) -> None:
    monkeypatch.setenv("JOBYARD_SIMULATE", "true" if simulate else "false")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    provider_for.cache_clear()


def test_every_provider_key_has_an_implementation() -> None:
    assert set(REAL_PROVIDERS) == set(PROVIDERS)
    assert REAL_PROVIDERS == EXPECTED


@pytest.mark.parametrize("model", list(MODEL_PROVIDERS))
def test_real_provider_when_configured_and_simulation_off(
    monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    setting = PROVIDERS[MODEL_PROVIDERS[model]].setting
    value = "http://127.0.0.1:9/answer" if setting.endswith("_URL") else "sk-test"
    configure(monkeypatch, simulate=False, **{setting: value})
    provider = provider_for(MODEL_PROVIDERS[model])
    assert isinstance(provider, EXPECTED[MODEL_PROVIDERS[model]])
    assert provider_for(MODEL_PROVIDERS[model]) is provider  # one instance per process


def test_real_provider_wins_over_the_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, simulate=True, ANTHROPIC_API_KEY="sk-test")
    assert isinstance(provider_for("anthropic"), AnthropicProvider)
    assert isinstance(provider_for("openai"), SimulatedProvider)


def test_unconfigured_without_simulation_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, simulate=False)
    with pytest.raises(ProviderError) as caught:
        provider_for("google-generative-ai")
    assert caught.value.retryable is False
    assert "GEMINI_API_KEY" in str(caught.value)
