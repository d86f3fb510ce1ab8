"""The model registry: every model has a provider, and an unconfigured one names its setting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.ai_models import (
    AI_MODELS,
    MODEL_PROVIDERS,
    PROVIDERS,
    ProviderInfo,
    ensure_models_available,
    provider_configured,
    provider_for_model,
)
from shared.errors import Unprocessable
from shared.settings import Settings, reset_settings_cache

# The trigger enum of the seed (mentionlab-trigger-job.txt), in its order.
SEED_ENUM = (
    "gpt-4.1-mini",
    "gpt-5-mini",
    "gpt-5-chat-latest",
    "gpt-5.1-chat-latest",
    "gpt-5.2-chat-latest",
    "gpt-5.3-chat-latest",
    "chat-latest",
    "claude-haiku-4-5",
    "gemini-2.5-flash",
    "gemini-3-flash-preview",
    "sonar",
    "deepseek-v3.2-maas",
    "ai-overview",
    "ai-mode",
    "scp-ml-chatgpt",
    "scp-ml-google-ai-mode",
    "scp-ml-gemini",
)
SETTINGS = {p.setting for p in PROVIDERS.values()}


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No provider configured and simulation off, in the environment."""
    monkeypatch.setenv("JOBYARD_SIMULATE", "false")
    for name in SETTINGS:
        bare = name.removeprefix("JOBYARD_")
        monkeypatch.delenv(bare, raising=False)
        monkeypatch.delenv(f"JOBYARD_{bare}", raising=False)
    yield monkeypatch
    monkeypatch.undo()
    reset_settings_cache()


def test_registry_is_the_seed_enum() -> None:
    """The accepted model ids are exactly the trigger enum, in order."""
    assert AI_MODELS == SEED_ENUM


def test_every_model_has_a_provider() -> None:
    """Each model resolves to a known provider."""
    for model in AI_MODELS:
        assert provider_for_model(model) is PROVIDERS[MODEL_PROVIDERS[model]]


def test_default_models_are_in_the_registry() -> None:
    """Each provider's default model is a model that provider answers."""
    for key, provider in PROVIDERS.items():
        assert MODEL_PROVIDERS[provider.default_model] == key


def test_unknown_model_is_a_key_error() -> None:
    """An id outside the registry is not silently given a provider."""
    with pytest.raises(KeyError):
        provider_for_model("gpt-2")


@pytest.mark.parametrize("provider", list(PROVIDERS.values()), ids=lambda p: p.key)
def test_each_setting_is_a_real_setting(
    provider: ProviderInfo, bare_env: pytest.MonkeyPatch
) -> None:
    """The variable a provider names really configures it (a typo would never configure it)."""
    assert not provider_configured(provider, Settings())
    bare_env.setenv(provider.setting, "https://search.test/" if "URL" in provider.setting else "k")
    assert provider_configured(provider, Settings())


@pytest.mark.parametrize("model", AI_MODELS)
def test_unconfigured_model_names_its_setting(model: str, bare_env: pytest.MonkeyPatch) -> None:
    """Without simulation an unconfigured model is a 422 naming the variable to set."""
    setting = provider_for_model(model).setting
    with pytest.raises(Unprocessable) as raised:
        ensure_models_available([model], Settings())
    error = raised.value
    assert error.http_status == 422
    assert f"set {setting}" in error.message and model in error.message
    assert error.message.startswith("aiModels: ")
    assert "JOBYARD_SIMULATE=true" in error.message
    assert error.details == [error.message]


@pytest.mark.parametrize("model", AI_MODELS)
def test_setting_the_named_variable_is_enough(model: str, bare_env: pytest.MonkeyPatch) -> None:
    """Once the variable the error names is set, the model is available."""
    bare_env.setenv(provider_for_model(model).setting, "configured")
    ensure_models_available([model], Settings())


def test_every_missing_model_is_listed(bare_env: pytest.MonkeyPatch) -> None:
    """The details list one line per unavailable model; configured ones are not listed."""
    bare_env.setenv("ANTHROPIC_API_KEY", "k")
    with pytest.raises(Unprocessable) as raised:
        ensure_models_available(["gpt-4.1-mini", "claude-haiku-4-5", "sonar"], Settings())
    details = raised.value.details
    assert len(details) == 2
    assert "gpt-4.1-mini" in details[0] and "OPENAI_API_KEY" in details[0]
    assert "sonar" in details[1] and "PERPLEXITY_API_KEY" in details[1]
    assert raised.value.message == details[0]


def test_prefixed_variable_also_configures(bare_env: pytest.MonkeyPatch) -> None:
    """JOBYARD_OPENAI_API_KEY is accepted as well as OPENAI_API_KEY."""
    bare_env.setenv("JOBYARD_OPENAI_API_KEY", "k")
    ensure_models_available(["gpt-5-mini"], Settings())


def test_simulation_needs_no_configuration(bare_env: pytest.MonkeyPatch) -> None:
    """With JOBYARD_SIMULATE=true every model is available without any key."""
    bare_env.setenv("JOBYARD_SIMULATE", "true")
    ensure_models_available(list(AI_MODELS), Settings())


def test_empty_key_is_not_configured(bare_env: pytest.MonkeyPatch) -> None:
    """An empty variable does not count as configured."""
    bare_env.setenv("OPENAI_API_KEY", "")
    with pytest.raises(Unprocessable):
        ensure_models_available(["gpt-4.1-mini"], Settings())


def test_deepseek_is_configured_by_vertex_credentials_alone(bare_env: pytest.MonkeyPatch) -> None:
    deepseek = PROVIDERS["deepseek"]
    bare_env.delenv("JOBYARD_DEEPSEEK_VERTEX_AUTH", raising=False)
    assert not provider_configured(deepseek, Settings())
    bare_env.setenv("JOBYARD_DEEPSEEK_VERTEX_AUTH", "true")
    assert provider_configured(deepseek, Settings())
