"""The registry of AI models: which provider answers each model id, and its settings.

The model ids are those of the Mentionlab trigger enum. Cached jobs name providers by key
(``openai``, ``anthropic``...), which resolve to each provider's default model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shared.errors import Unprocessable
from shared.settings import Settings


@dataclass(frozen=True)
class ProviderInfo:
    """A provider: the setting that configures it and its default model."""

    key: str
    setting: str  # the environment variable that must be set to use the real provider
    default_model: str
    alternative: str | None = None  # another setting that configures it on its own


PROVIDERS: dict[str, ProviderInfo] = {
    p.key: p
    for p in (
        ProviderInfo("openai", "OPENAI_API_KEY", "gpt-4.1-mini"),
        ProviderInfo("anthropic", "ANTHROPIC_API_KEY", "claude-haiku-4-5"),
        ProviderInfo("google-generative-ai", "GEMINI_API_KEY", "gemini-2.5-flash"),
        ProviderInfo("perplexity", "PERPLEXITY_API_KEY", "sonar"),
        ProviderInfo(
            "deepseek", "DEEPSEEK_API_KEY", "deepseek-v3.2-maas", "JOBYARD_DEEPSEEK_VERTEX_AUTH"
        ),
        ProviderInfo("ai-overview", "JOBYARD_SEARCH_ENDPOINT_URL", "ai-overview"),
        ProviderInfo("ai-mode", "JOBYARD_SEARCH_ENDPOINT_URL", "ai-mode"),
        ProviderInfo("scraper", "JOBYARD_SEARCH_ENDPOINT_URL", "scp-ml-chatgpt"),
    )
}


@dataclass(frozen=True)
class VendorModel:
    """A model as its vendor's API names it: a dated snapshot where the vendor offers one
    (an alias such as ``-latest`` changes underneath), with its shutdown date when the
    vendor has announced one."""

    name: str  # what the vendor's API takes
    alias: str | None = None  # the undated name this snapshot pins, if any
    shutdown: date | None = None  # known retirement date (requests fail from that day)
    note: str = ""


def _models(*models: VendorModel) -> dict[str, VendorModel]:
    return {m.name: m for m in models}


# Every vendor model jobyard has sent, current and retired. Retired ones stay listed, with
# their shutdown dates, so a public id's history is readable and the lifecycle test can tell
# a mapping that points at a dead model. Dates from the vendors' deprecation pages.
VENDOR_MODELS: dict[str, VendorModel] = _models(
    # OpenAI
    VendorModel("gpt-4.1-mini-2025-04-14", alias="gpt-4.1-mini"),
    VendorModel("gpt-5-mini-2025-08-07", alias="gpt-5-mini", shutdown=date(2026, 12, 11)),
    VendorModel("gpt-5.4-mini-2026-03-17", alias="gpt-5.4-mini"),
    VendorModel("gpt-5.5-2026-04-23", alias="gpt-5.5"),
    VendorModel("chatgpt-4o-latest", shutdown=date(2026, 2, 17)),
    VendorModel("gpt-5-chat-latest", shutdown=date(2026, 7, 23)),
    VendorModel("gpt-5.1-chat-latest", shutdown=date(2026, 7, 23)),
    VendorModel("gpt-5.2-chat-latest", shutdown=date(2026, 8, 10)),
    VendorModel("gpt-5.3-chat-latest", shutdown=date(2026, 8, 10)),
    # Anthropic
    VendorModel("claude-haiku-4-5-20251001", alias="claude-haiku-4-5"),
    # Google: no dated snapshots on the Gemini API. 2.5 Flash's retirement is announced
    # without a date we could verify; fill it in when it is published.
    VendorModel("gemini-2.5-flash", note="retirement announced, date not verified"),
    VendorModel("gemini-3-flash-preview", note="preview: may change or end at short notice"),
    # Perplexity, DeepSeek (on Vertex AI Model-as-a-Service: "<publisher>/<model>")
    VendorModel("sonar"),
    VendorModel("deepseek-ai/deepseek-v3.2-maas"),
    # The search/scraper endpoint's sources are ours to name.
    *(VendorModel(n) for n in ("ai-overview", "ai-mode")),
    *(VendorModel(n) for n in ("scp-ml-chatgpt", "scp-ml-google-ai-mode", "scp-ml-gemini")),
)


@dataclass(frozen=True)
class PublicModel:
    """A model id of the public API (the Mentionlab enum) and the vendor model serving it.
    ``retired`` names what the id first meant when that model is gone: the id then maps
    to its successor and keeps working."""

    id: str
    provider: str  # a key of PROVIDERS
    serves: str  # a key of VENDOR_MODELS
    retired: str | None = None


# Every model id of the trigger enum, in the enum's order. When a vendor model retires,
# point its public id at the successor here and name the retired one; the answer records
# the model the vendor reports having served.
PUBLIC_MODELS: dict[str, PublicModel] = {
    m.id: m
    for m in (
        PublicModel("gpt-4.1-mini", "openai", "gpt-4.1-mini-2025-04-14"),
        PublicModel("gpt-5-mini", "openai", "gpt-5.4-mini-2026-03-17", "gpt-5-mini-2025-08-07"),
        PublicModel("gpt-5-chat-latest", "openai", "gpt-5.5-2026-04-23", "gpt-5-chat-latest"),
        PublicModel("gpt-5.1-chat-latest", "openai", "gpt-5.5-2026-04-23", "gpt-5.1-chat-latest"),
        PublicModel("gpt-5.2-chat-latest", "openai", "gpt-5.5-2026-04-23", "gpt-5.2-chat-latest"),
        PublicModel("gpt-5.3-chat-latest", "openai", "gpt-5.5-2026-04-23", "gpt-5.3-chat-latest"),
        PublicModel("chat-latest", "openai", "gpt-5.5-2026-04-23", "chatgpt-4o-latest"),
        PublicModel("claude-haiku-4-5", "anthropic", "claude-haiku-4-5-20251001"),
        PublicModel("gemini-2.5-flash", "google-generative-ai", "gemini-2.5-flash"),
        PublicModel("gemini-3-flash-preview", "google-generative-ai", "gemini-3-flash-preview"),
        PublicModel("sonar", "perplexity", "sonar"),
        PublicModel("deepseek-v3.2-maas", "deepseek", "deepseek-ai/deepseek-v3.2-maas"),
        PublicModel("ai-overview", "ai-overview", "ai-overview"),
        PublicModel("ai-mode", "ai-mode", "ai-mode"),
        PublicModel("scp-ml-chatgpt", "scraper", "scp-ml-chatgpt"),
        PublicModel("scp-ml-google-ai-mode", "scraper", "scp-ml-google-ai-mode"),
        PublicModel("scp-ml-gemini", "scraper", "scp-ml-gemini"),
    )
}

# The public id → provider key view the API and the registry use.
MODEL_PROVIDERS: dict[str, str] = {m.id: m.provider for m in PUBLIC_MODELS.values()}

AI_MODELS: tuple[str, ...] = tuple(MODEL_PROVIDERS)


@dataclass(frozen=True)
class ResolvedModel:
    """A public model id resolved to what answers it: the provider (a key of
    :data:`PROVIDERS`) and the vendor's name for the model. An AI run resolves each of its
    models once, when its executions are planned, and carries the result in each
    execution's item (:meth:`as_item`): the executor, the throttle, the provider and the
    price lookup all read it from there instead of looking the id up again."""

    model: str  # the public id, as the client named it (and as answers show it)
    provider: str
    vendor_model: str

    def as_item(self) -> dict[str, str]:
        return {"model": self.model, "provider": self.provider, "vendorModel": self.vendor_model}


def resolve_model(model: str) -> ResolvedModel:
    """``model``'s provider and vendor name (a KeyError for an unknown id)."""
    return ResolvedModel(model, MODEL_PROVIDERS[model], vendor_model_name(model))


def vendor_model_name(model: str) -> str:
    """The name the vendor's API knows public id ``model`` by (unknown ids as they are)."""
    public = PUBLIC_MODELS.get(model)
    return public.serves if public is not None else model


def provider_for_model(model: str) -> ProviderInfo:
    """The provider that answers ``model`` (a KeyError for an unknown id)."""
    return PROVIDERS[MODEL_PROVIDERS[model]]


def provider_configured(provider: ProviderInfo, settings: Settings) -> bool:
    """Whether the real provider has the credentials (or endpoint) it needs."""
    for setting in (provider.setting, provider.alternative):
        if setting and getattr(settings, setting.lower().removeprefix("jobyard_"), None):
            return True
    return False


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
