"""One attempt of one execution: claim it, do the work outside any transaction, finish it."""

from __future__ import annotations

import logging
import time
import uuid

from shared import publisher
from shared.db import commit_without_flush_wait, session_scope
from shared.services.answers import Brand, extract_sources, find_mentions, load_ai_context
from shared.services.lifecycle import Claim, Outcome, claim_execution, finish_execution
from worker.providers.base import AiRequest, ProviderError
from worker.providers.registry import provider_for

log = logging.getLogger(__name__)


def run_execution(execution_id: uuid.UUID) -> str:
    """Run one attempt; returns what happened (for logs): dropped, success, retrying, failed."""
    with session_scope() as session:
        commit_without_flush_wait(session)
        claim = claim_execution(session, execution_id)
        context = load_ai_context(session, claim.query_id) if claim else None
    if claim is None:
        return "dropped"  # a duplicate or stale message: another attempt owns the row
    if context is None:
        outcome = Outcome.failed("the query of this execution no longer exists")
    else:
        outcome = call_ai_model(claim, context.query_text, context.brands)
    with session_scope() as session:
        commit_without_flush_wait(session)
        finished = finish_execution(session, claim, outcome)
    if finished is None:
        log.info("execution %s: lease lost before finishing; outcome not counted", execution_id)
        return "lease-lost"
    if finished.retry_in is not None:
        publisher.publish_executions([execution_id], countdown=finished.retry_in)
    return finished.status


def call_ai_model(claim: Claim, query_text: str, brands: list[Brand]) -> Outcome:
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
        answer = provider_for(claim.model).answer(request)
    except ProviderError as exc:
        return Outcome.failed(str(exc), retryable=exc.retryable, retry_after=exc.retry_after)
    except Exception as exc:  # an unexpected bug: bounded by max_attempts, error kept
        log.exception("execution %s: unexpected provider error", claim.execution_id)
        return Outcome.failed(f"internal error: {exc!r}", retryable=True)
    return Outcome.succeeded(
        {
            "text": answer.text,
            "sources": extract_sources(answer.text, answer.citations),
            "entities": find_mentions(answer.text, brands),
            "simulated": answer.simulated,
            "provider": answer.provider,
            "model": answer.model,
            "latencyMs": round((time.perf_counter() - started) * 1000, 1),
        }
    )
