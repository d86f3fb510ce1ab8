"""The registry of AI models: which provider answers each model id, and its settings.

The model ids are those of the Mentionlab trigger enum. Cached jobs name providers by key
(``openai``, ``anthropic``...), which resolve to each provider's default model.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import Unprocessable
from shared.settings import Settings


@dataclass(frozen=True)
class ProviderInfo:
    """A provider: the setting that configures it and its default model."""

    key: str
    setting: str  # the environment variable that must be set to use the real provider
    default_model: str


PROVIDERS: dict[str, ProviderInfo] = {
    p.key: p
    for p in (
        ProviderInfo("openai", "OPENAI_API_KEY", "gpt-4.1-mini"),
        ProviderInfo("anthropic", "ANTHROPIC_API_KEY", "claude-haiku-4-5"),
        ProviderInfo("google-generative-ai", "GEMINI_API_KEY", "gemini-2.5-flash"),
        ProviderInfo("perplexity", "PERPLEXITY_API_KEY", "sonar"),
        ProviderInfo("deepseek", "DEEPSEEK_API_KEY", "deepseek-v3.2-maas"),
        ProviderInfo("ai-overview", "JOBYARD_SEARCH_ENDPOINT_URL", "ai-overview"),
        ProviderInfo("ai-mode", "JOBYARD_SEARCH_ENDPOINT_URL", "ai-mode"),
        ProviderInfo("scraper", "JOBYARD_SEARCH_ENDPOINT_URL", "scp-ml-chatgpt"),
    )
}

# Every model id of the trigger enum, in the enum's order, mapped to its provider key.
MODEL_PROVIDERS: dict[str, str] = {
    "gpt-4.1-mini": "openai",
    "gpt-5-mini": "openai",
    "gpt-5-chat-latest": "openai",
    "gpt-5.1-chat-latest": "openai",
    "gpt-5.2-chat-latest": "openai",
    "gpt-5.3-chat-latest": "openai",
    "chat-latest": "openai",
    "claude-haiku-4-5": "anthropic",
    "gemini-2.5-flash": "google-generative-ai",
    "gemini-3-flash-preview": "google-generative-ai",
    "sonar": "perplexity",
    "deepseek-v3.2-maas": "deepseek",
    "ai-overview": "ai-overview",
    "ai-mode": "ai-mode",
    "scp-ml-chatgpt": "scraper",
    "scp-ml-google-ai-mode": "scraper",
    "scp-ml-gemini": "scraper",
}

AI_MODELS: tuple[str, ...] = tuple(MODEL_PROVIDERS)


def provider_for_model(model: str) -> ProviderInfo:
    """The provider that answers ``model`` (a KeyError for an unknown id)."""
    return PROVIDERS[MODEL_PROVIDERS[model]]


def provider_configured(provider: ProviderInfo, settings: Settings) -> bool:
    """Whether the real provider has the credentials (or endpoint) it needs."""
    attribute = provider.setting.lower().removeprefix("jobyard_")
    return bool(getattr(settings, attribute, None))


def ensure_models_available(models: list[str], settings: Settings) -> None:
    """Raise Unprocessable, naming the setting to fill in, for a model nobody can answer."""
    if settings.simulate_providers:
        return
    missing = []
    for model in models:
        provider = provider_for_model(model)
        if not provider_configured(provider, settings):
            missing.append(
                f"aiModels: {model} needs provider '{provider.key}', which is not configured: "
                f"set {provider.setting} (or JOBYARD_SIMULATE=true for the offline simulation)"
            )
    if missing:
        raise Unprocessable(missing[0], details=missing)
