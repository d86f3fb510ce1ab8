"""One attempt of one execution: claim it, do the work outside any transaction, finish it."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from sqlalchemy import Connection

from shared import publisher
from shared.ai_models import provider_for_model
from shared.db import connection_scope
from shared.services.answers import (
    AiContext,
    Brand,
    extract_sources,
    find_mentions,
    load_ai_context,
)
from shared.services.lifecycle import (
    Claim,
    Outcome,
    claim_execution,
    finish_execution,
    leave_to_sweep,
    release_claim,
    seconds_until_due,
)
from worker.providers.base import AiProvider, AiRequest, ProviderError
from worker.providers.registry import provider_for
from worker.throttle import Permit, provider_throttle

log = logging.getLogger(__name__)

# A query's text and its project's brands, kept this long per process: one join less per
# execution (a renamed brand shows in answers from at most this long after).
CONTEXT_TTL_SECONDS = 30.0
_contexts: dict[uuid.UUID, tuple[float, AiContext | None]] = {}
_contexts_lock = threading.Lock()


def ai_context(connection: Connection, query_id: uuid.UUID | None) -> AiContext | None:
    """:func:`load_ai_context`, cached per process for ``CONTEXT_TTL_SECONDS``."""
    if query_id is None:
        return None
    now = time.monotonic()
    with _contexts_lock:
        cached = _contexts.get(query_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    context = load_ai_context(connection, query_id)
    with _contexts_lock:
        if len(_contexts) > 10_000:  # bounded: drop everything, it refills on demand
            _contexts.clear()
        _contexts[query_id] = (now + CONTEXT_TTL_SECONDS, context)
    return context


# A throttled call waits in its thread up to this long; longer waits go back to the broker
# (with the attempt given back) so that threads are not held idle.
INLINE_THROTTLE_WAIT_SECONDS = 2.0


def run_execution(execution_id: uuid.UUID) -> str:
    """Run one attempt; returns what happened (for logs): dropped, early, throttled,
    lease-lost, or the execution's new status."""
    with connection_scope() as connection:
        claim = claim_execution(connection, execution_id)
        context = ai_context(connection, claim.query_id) if claim else None
        early_by = None if claim else seconds_until_due(connection, execution_id)
    if claim is None:
        if early_by is not None:  # delivered before its retry time: wait for it
            republish(execution_id, early_by)
            return "early"
        return "dropped"  # a duplicate or stale message: another attempt owns the row

    assert claim.model is not None
    try:
        provider = provider_for(claim.model)
        provider.prepare()
    except ProviderError as exc:  # not configured, or not callable: no call, no permit
        provider, outcome = None, Outcome.failed(str(exc), retryable=exc.retryable)
    if provider is not None:
        permit = provider_throttle().acquire(
            provider_for_model(claim.model), max_wait=INLINE_THROTTLE_WAIT_SECONDS
        )
        if not isinstance(permit, Permit):
            with connection_scope() as connection:
                released = release_claim(connection, claim, permit)
            if released:
                republish(execution_id, permit)
            return "throttled"
        try:
            if context is None:
                outcome = Outcome.failed("the query of this execution no longer exists")
            else:
                outcome = call_ai_model(provider, claim, context.query_text, context.brands)
        finally:
            permit.release()

    with connection_scope() as connection:
        finished = finish_execution(connection, claim, outcome)
    if finished is None:
        log.info("execution %s: lease lost before finishing; outcome not counted", execution_id)
        return "lease-lost"
    if finished.retry_in is not None:
        republish(execution_id, finished.retry_in)
    return finished.status


def republish(execution_id: uuid.UUID, countdown: float) -> None:
    """Publish the execution again after ``countdown`` s; if the broker is away, leave it
    to the recovery sweep rather than fail the task."""
    try:
        publisher.publish_executions([execution_id], countdown=countdown)
    except Exception:
        log.warning("execution %s: broker unreachable; left to the sweep", execution_id)
        with connection_scope() as connection:
            leave_to_sweep(connection, execution_id)


def call_ai_model(
    provider: AiProvider, claim: Claim, query_text: str, brands: list[Brand]
) -> Outcome:
    """Ask the model and turn its answer (or failure) into an :class:`Outcome`."""
    assert claim.model is not None
    request = AiRequest(
        model=claim.model,
        query=query_text,
        language=claim.language or "en",
        country=claim.country or "US",
        seed=f"{claim.query_id}:{claim.model}:{claim.run_number}",
        attempt=claim.attempt,
        brand_names=tuple(b.display_name for b in brands),
    )
    started = time.perf_counter()
    try:
        answer = provider.answer(request)
    except ProviderError as exc:
        return Outcome.failed(str(exc), retryable=exc.retryable, retry_after=exc.retry_after)
    except Exception as exc:  # an unexpected bug: bounded by max_attempts, error kept
        log.exception("execution %s: unexpected provider error", claim.execution_id)
        return Outcome.failed(f"internal error: {exc!r}", retryable=True)
    entities = find_mentions(answer.text, brands)
    return Outcome.succeeded(
        {
            "text": answer.text,
            "sources": extract_sources(answer.text, answer.citations),
            "entities": entities,
            "simulated": answer.simulated,
            "provider": answer.provider,
            "model": answer.model,
            "latencyMs": round((time.perf_counter() - started) * 1000, 1),
        },
        primary_mentioned=any(e["isPrimary"] and e["mentioned"] for e in entities),
    )
