"""What a model call costs: a price table per vendor model, and the cost of one call.

The defaults are the vendors' list prices in USD as we last read them; they change, and
contracts differ, so the table is a setting (``JOBYARD_MODEL_PRICES``, JSON: ``{"<vendor
model>": {"input": 0.4, "output": 1.6, ...}}``) that replaces the entries it names. A model
missing from the table costs 0 and its executions say ``"costKnown": false``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelPrice(BaseModel):
    """USD per million tokens, and per thousand searches / requests."""

    input: float = Field(default=0.0, ge=0)  # uncached input tokens
    cached_input: float | None = Field(default=None, ge=0)  # None: billed as input
    output: float = Field(default=0.0, ge=0)  # output tokens, reasoning tokens included
    search_per_1k: float = Field(default=0.0, ge=0)  # per thousand web searches
    request_per_1k: float = Field(default=0.0, ge=0)  # a flat fee per request (Perplexity)


def _p(
    input: float,
    output: float,
    cached: float | None = None,
    search: float = 0.0,
    request: float = 0.0,
) -> ModelPrice:
    return ModelPrice(
        input=input,
        output=output,
        cached_input=cached,
        search_per_1k=search,
        request_per_1k=request,
    )


# By vendor model name (shared.ai_models.VENDOR_MODELS).
DEFAULT_MODEL_PRICES: dict[str, ModelPrice] = {
    "gpt-4.1-mini-2025-04-14": _p(0.40, 1.60, cached=0.10, search=25.0),
    "gpt-5.4-mini-2026-03-17": _p(0.75, 4.50, cached=0.075, search=10.0),
    "gpt-5.5-2026-04-23": _p(5.00, 30.0, cached=0.50, search=10.0),
    "claude-haiku-4-5-20251001": _p(1.00, 5.00, cached=0.10, search=10.0),
    "gemini-2.5-flash": _p(0.30, 2.50, cached=0.03, search=35.0),
    "gemini-3-flash-preview": _p(0.50, 3.00, cached=0.05, search=14.0),
    "sonar": _p(1.00, 1.00, request=5.0),
    "deepseek-ai/deepseek-v3.2-maas": _p(0.56, 1.68),
}


def call_cost(
    price: ModelPrice,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int,
    search_calls: int,
) -> float:
    """The USD cost of one call that consumed this much."""
    cached = min(cached_tokens, input_tokens)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    tokens = (
        (input_tokens - cached) * price.input + cached * cached_rate + output_tokens * price.output
    ) / 1_000_000
    return tokens + (search_calls * price.search_per_1k + price.request_per_1k) / 1000
