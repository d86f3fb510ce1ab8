"""Asking a model, for every executor that does: the provider's global limits, the call,
and what the attempt cost, as an :class:`Outcome`.

(Imported by the executors; it registers nothing itself.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shared.ai_models import PROVIDERS
from shared.engine.outcomes import Outcome
from shared.pricing import call_cost
from shared.settings import get_settings
from worker.providers.base import AiAnswer, AiRequest, ProviderError, Served
from worker.providers.registry import provider_for
from worker.throttle import Permit, provider_throttle

log = logging.getLogger(__name__)

# Builds the success outcome from the answer, the attempt's cost (None: no price known)
# and the call's latency in milliseconds.
OnAnswer = Callable[[AiAnswer, float | None, float], Outcome]


async def call_model(request: AiRequest, on_answer: OnAnswer) -> Outcome:
    """Ask ``request.model`` under its provider's global rate and concurrency limits (the
    provider and vendor model the request carries, resolved when it was planned).

    A provider that is not configured fails without a call; a call throttled for longer
    than ``throttle_inline_wait_seconds`` gives its attempt back (deferred); a failed call
    is retryable or not as the provider says, and costs what the vendor billed for it.
    """
    try:
        provider = provider_for(request.provider)
        provider.prepare()
    except ProviderError as exc:  # not configured, or not callable: no call, no permit
        return Outcome.failed(str(exc), retryable=exc.retryable)
    throttle = provider_throttle()
    info = PROVIDERS[request.provider]
    while True:
        permit = await throttle.acquire(info, max_wait=get_settings().throttle_inline_wait_seconds)
        if not isinstance(permit, Permit):
            return Outcome.deferred(permit)
        if permit.fresh():
            break
        await permit.release()  # granted too long ago to be on time: take a new slot
    started = time.perf_counter()
    try:
        answer = await provider.answer(request)
    except ProviderError as exc:
        cost = attempt_cost(request, exc.served) if exc.served is not None else None
        return Outcome.failed(
            str(exc), retryable=exc.retryable, retry_after=exc.retry_after, cost=cost or 0.0
        )
    except Exception as exc:  # an unexpected bug: bounded by max_attempts, error kept
        log.exception("unexpected error from %s for %s", provider.name, request.seed)
        return Outcome.failed(f"internal error: {exc!r}", retryable=True)
    finally:
        await permit.release()
    cost = None if answer.simulated else attempt_cost(request, answer.served)
    return on_answer(answer, cost, round((time.perf_counter() - started) * 1000, 1))


def attempt_cost(request: AiRequest, served: Served) -> float | None:
    """What a call cost in USD, from the price table (None: no price for its model)."""
    settings = get_settings()
    price = (served.model and settings.price_of(served.model)) or settings.price_of(
        request.vendor_model
    )
    if price is None:
        return None
    usage = served.usage
    return call_cost(
        price,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        search_calls=usage.search_calls,
    )
