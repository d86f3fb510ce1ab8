"""The model lifecycle table: every public id is served by a vendor model that exists today,
retired ids keep working through their successors, and prices turn usage into cost."""

from __future__ import annotations

from datetime import date

import pytest

from shared.ai_models import PUBLIC_MODELS, VENDOR_MODELS, vendor_model_name
from shared.pricing import DEFAULT_MODEL_PRICES, ModelPrice, call_cost
from shared.settings import Settings


@pytest.mark.parametrize("public_id", list(PUBLIC_MODELS))
def test_no_public_id_points_at_a_model_past_its_shutdown(public_id: str) -> None:
    """Fails on the day a vendor shuts a mapped model down: remap it before then."""
    served = VENDOR_MODELS[PUBLIC_MODELS[public_id].serves]
    assert served.shutdown is None or served.shutdown > date.today(), (
        f"{public_id} is served by {served.name}, shut down on {served.shutdown}: "
        "point it at the successor in shared/ai_models.py"
    )


def test_a_retired_id_names_what_it_was_and_maps_elsewhere() -> None:
    for model in PUBLIC_MODELS.values():
        if model.retired is None:
            continue
        retired = VENDOR_MODELS[model.retired]
        assert retired.shutdown is not None, model
        assert model.serves != model.retired
    # The ids the issue named: the ChatGPT aliases and gpt-5-mini now have successors.
    for public_id in ("chat-latest", "gpt-5-chat-latest", "gpt-5.3-chat-latest", "gpt-5-mini"):
        assert PUBLIC_MODELS[public_id].retired is not None
        assert vendor_model_name(public_id) != public_id


def test_snapshots_are_pinned_where_the_vendor_has_them() -> None:
    assert vendor_model_name("gpt-4.1-mini") == "gpt-4.1-mini-2025-04-14"
    assert vendor_model_name("claude-haiku-4-5") == "claude-haiku-4-5-20251001"
    for model in VENDOR_MODELS.values():
        if model.alias is not None:
            assert model.name.startswith(model.alias + "-"), model


@pytest.mark.parametrize("public_id", list(PUBLIC_MODELS))
def test_every_paid_model_has_a_price(public_id: str) -> None:
    model = PUBLIC_MODELS[public_id]
    if model.provider in ("ai-overview", "ai-mode", "scraper"):  # our own endpoint
        return
    assert model.serves in DEFAULT_MODEL_PRICES


def test_call_cost_counts_tokens_cached_input_and_searches() -> None:
    price = ModelPrice(input=1.0, cached_input=0.1, output=4.0, search_per_1k=10.0)
    cost = call_cost(
        price, input_tokens=1_000_000, output_tokens=500_000, cached_tokens=200_000, search_calls=3
    )
    # 800k uncached at $1/M + 200k cached at $0.1/M + 500k out at $4/M + 3 searches at $10/k
    assert cost == pytest.approx(0.8 + 0.02 + 2.0 + 0.03)
    flat = ModelPrice(input=1.0, output=1.0, request_per_1k=5.0)
    assert call_cost(
        flat, input_tokens=0, output_tokens=0, cached_tokens=0, search_calls=0
    ) == pytest.approx(0.005)


def test_prices_are_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBYARD_MODEL_PRICES", '{"sonar": {"input": 9, "output": 9}}')
    settings = Settings()
    sonar = settings.price_of("sonar")
    assert sonar is not None and sonar.input == 9
    assert settings.price_of("gemini-2.5-flash") == DEFAULT_MODEL_PRICES["gemini-2.5-flash"]
    assert settings.price_of("no-such-model") is None
