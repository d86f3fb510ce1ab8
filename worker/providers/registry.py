"""Which implementation answers a model: the real provider when configured, else the
simulation when it is switched on."""

from __future__ import annotations

from functools import lru_cache

from shared.ai_models import PROVIDERS, provider_configured
from shared.settings import get_settings
from worker.providers.anthropic_provider import AnthropicProvider
from worker.providers.base import AiProvider, ProviderError
from worker.providers.gemini import GeminiProvider
from worker.providers.openai_compatible import DeepSeekProvider, OpenAIProvider, PerplexityProvider
from worker.providers.search_endpoint import SearchEndpointProvider
from worker.providers.simulated import SimulatedProvider

# Real provider implementations, by provider key (shared.ai_models.PROVIDERS). A configured
# provider without an implementation fails its executions clearly.
REAL_PROVIDERS: dict[str, type] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "google-generative-ai": GeminiProvider,
    "perplexity": PerplexityProvider,
    "deepseek": DeepSeekProvider,
    "ai-overview": SearchEndpointProvider,
    "ai-mode": SearchEndpointProvider,
    "scraper": SearchEndpointProvider,
}


@lru_cache(maxsize=32)
def provider_for(provider_key: str) -> AiProvider:
    """The instance of provider ``provider_key`` (a key of shared.ai_models.PROVIDERS, as
    a request's resolved model names it) in this process."""
    settings = get_settings()
    info = PROVIDERS[provider_key]
    if provider_configured(info, settings):
        implementation = REAL_PROVIDERS.get(info.key)
        if implementation is not None:
            provider: AiProvider = implementation(settings)
            return provider
        if not settings.simulate_providers:
            raise ProviderError(
                f"provider '{info.key}' is configured but not implemented in this build",
                retryable=False,
            )
    if settings.simulate_providers:
        return SimulatedProvider(settings)
    raise ProviderError(
        f"provider '{info.key}' is not configured: set {info.setting}", retryable=False
    )
