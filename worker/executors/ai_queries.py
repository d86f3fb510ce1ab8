"""The ``ai_queries`` executor: ask each execution's model its query, in its country.

A group's query contexts (text, the project's brands) are read in one query and kept per
process for ``CONTEXT_TTL_SECONDS``. Every execution of the group is asked at once on the
event loop; the provider's global rate and concurrency limits are taken per call (a call
throttled for long gives its attempt back and comes again later).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from shared.db import connection_scope
from shared.engine.claim import Claim
from shared.engine.job_types import Report
from shared.engine.outcomes import Outcome
from shared.mentionlab.answers import (
    AiContext,
    extract_sources,
    find_mentions,
    project_brands,
)
from shared.mentionlab.models import Project, Query
from worker.executors.calls import call_model
from worker.executors.lookup_cache import LookupCache
from worker.providers.base import AiAnswer, AiRequest, Source

log = logging.getLogger(__name__)

# A query's text and its project's brands, kept this long per process: one read per group
# instead of one per execution (a renamed brand shows in answers from at most this long).
CONTEXT_TTL_SECONDS = 30.0
_contexts: LookupCache[uuid.UUID, AiContext | None] = LookupCache(ttl_seconds=CONTEXT_TTL_SECONDS)


def load_contexts(query_ids: set[uuid.UUID]) -> dict[uuid.UUID, AiContext | None]:
    """The contexts of ``query_ids`` (None for a deleted query), cached per process."""
    return _contexts.get_many(query_ids, _read_contexts)


def _read_contexts(query_ids: set[uuid.UUID]) -> dict[uuid.UUID, AiContext | None]:
    loaded: dict[uuid.UUID, AiContext | None] = dict.fromkeys(query_ids)
    for query_id, text, name, aliases, competitors, web_search in read_contexts(query_ids):
        loaded[query_id] = AiContext(
            text,
            project_brands(name, list(aliases or []), list(competitors or [])),
            web_search,
        )
    return loaded


def read_contexts(query_ids: set[uuid.UUID]) -> list[Any]:
    """One read of the queries' texts and brands; once more on a fresh connection if the
    pooled one was dropped (a database restart kills every pooled connection at once)."""
    statement = (
        select(
            Query.id,
            Query.text,
            Project.name,
            Project.name_aliases,
            Project.competitors,
            Project.web_search,
        )
        .join(Project, Project.id == Query.project_id)
        .where(Query.id.in_(query_ids))
    )
    try:
        with connection_scope() as connection:
            return list(connection.execute(statement).all())
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with connection_scope() as connection:
        return list(connection.execute(statement).all())


class AiQueriesExecutor:
    """Asks every claimed execution's model its query (see the module docstring)."""

    async def execute(self, claims: Sequence[Claim], report: Report) -> None:
        query_ids = {uuid.UUID(c.item["queryId"]) for c in claims if c.item.get("queryId")}
        contexts = await asyncio.to_thread(load_contexts, query_ids)
        await asyncio.gather(*(self.run_one(claim, contexts, report) for claim in claims))

    async def run_one(
        self, claim: Claim, contexts: dict[uuid.UUID, AiContext | None], report: Report
    ) -> None:
        item = claim.item
        context = contexts.get(uuid.UUID(item["queryId"])) if item.get("queryId") else None
        if context is None:
            report(claim, Outcome.failed("the query of this execution no longer exists"))
            return
        report(claim, await ask_query(claim, context))


async def ask_query(claim: Claim, context: AiContext) -> Outcome:
    """Ask the execution's model its query, in its country, and judge the answer."""
    item: dict[str, Any] = claim.item
    model = str(item["model"])
    request = AiRequest(
        model=model,
        query=context.query_text,
        language=item.get("language") or "en",
        country=item.get("country") or "US",
        seed=f"{item.get('queryId')}:{model}:{item.get('run')}",
        attempt=claim.attempt,
        brand_names=tuple(b.display_name for b in context.brands),
        web_search=context.web_search is not False,  # the project's choice; None: on
        # Resolved once, when the job was planned (shared.mentionlab.runs.plan_ai_runs);
        # an item planned before that carried them is resolved by the request itself.
        provider=str(item.get("provider") or ""),
        vendor_model=str(item.get("vendorModel") or ""),
    )

    def judged(answer: AiAnswer, cost: float | None, latency_ms: float) -> Outcome:
        entities = find_mentions(answer.text, context.brands)
        mentioned = any(e["isPrimary"] and e["mentioned"] for e in entities)
        cited, retrieved = source_lists(answer)
        return Outcome.succeeded(
            {
                "text": answer.text,
                "sources": cited,
                "retrievedSources": retrieved,
                "webSearch": answer.web_search.value,
                "entities": entities,
                "simulated": answer.simulated,
                "provider": answer.provider,
                "model": answer.model,
                "servedModel": answer.served.model,
                "requestId": answer.served.request_id,
                "usage": answer.served.usage.as_dict(),
                "cost": cost or 0.0,
                "costKnown": cost is not None,
                "latencyMs": latency_ms,
            },
            summary={"mentioned": mentioned},
            cost=cost or 0.0,
        )

    return await call_model(request, judged)


def source_lists(answer: AiAnswer) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cited, retrieved) as stored: each source with its 1-based position in its list;
    retrieved sources also say whether the answer cited them. An answer without
    structured sources (the simulation, a plain chat model) cites the links in its text."""
    cited = answer.cited or [
        Source(url=s["url"], domain=s["domain"]) for s in extract_sources(answer.text)
    ]
    keys = {s.url or s.redirect_url or s.domain for s in cited}
    retrieved = answer.retrieved or cited

    def row(position: int, source: Source) -> dict[str, Any]:
        return {
            "position": position,
            "url": source.url,
            "domain": source.domain,
            "title": source.title,
            **({"redirectUrl": source.redirect_url} if source.redirect_url else {}),
        }

    return (
        [{**row(i, s), "cited": True} for i, s in enumerate(cited, 1)],
        [
            {**row(i, s), "cited": (s.url or s.redirect_url or s.domain) in keys}
            for i, s in enumerate(retrieved, 1)
        ],
    )


# The job type's spec names it ("worker.executors.ai_queries:EXECUTOR").
EXECUTOR = AiQueriesExecutor()
