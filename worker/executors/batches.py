"""The ``batch`` executor: each data point's input goes through its batch's processor —
the prompt template rendered with the input's fields, sent to the processor's model.

A batch's processor was copied onto it when it was accepted; it is read once per batch
and process (it never changes). The data point's response is the model's answer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from sqlalchemy import select

from shared.batches.processor import Processor, render
from shared.db import connection_scope
from shared.engine.claim import Claim
from shared.engine.job_types import Report
from shared.engine.outcomes import Outcome
from shared.models import Job
from worker.executors.calls import call_model
from worker.executors.lookup_cache import LookupCache
from worker.providers.base import AiAnswer, AiRequest

# A batch's processor never changes: kept for the life of the process.
_processors: LookupCache[uuid.UUID, Processor] = LookupCache()


def load_processors(job_ids: set[uuid.UUID]) -> dict[uuid.UUID, Processor]:
    """The processors of these batches (one read for those not seen yet in this process;
    a batch that no longer exists is absent)."""
    return _processors.get_many(job_ids, _read_processors)


def _read_processors(job_ids: set[uuid.UUID]) -> dict[uuid.UUID, Processor]:
    with connection_scope() as connection:
        rows = connection.execute(select(Job.id, Job.payload).where(Job.id.in_(job_ids))).all()
    return {
        job_id: Processor.from_json((payload or {}).get("processor")) for job_id, payload in rows
    }


class BatchExecutor:
    """Processes every claimed data point of a group at once."""

    async def execute(self, claims: Sequence[Claim], report: Report) -> None:
        processors = await asyncio.to_thread(load_processors, {c.job_id for c in claims})
        await asyncio.gather(*(self.run_one(c, processors, report) for c in claims))

    async def run_one(
        self, claim: Claim, processors: dict[uuid.UUID, Processor], report: Report
    ) -> None:
        processor = processors.get(claim.job_id)
        if processor is None:
            report(claim, Outcome.failed("the batch of this data point no longer exists"))
            return
        report(claim, await process(claim, processor))


async def process(claim: Claim, processor: Processor) -> Outcome:
    """One data point: its prompt, the model's answer as its response."""
    value = claim.item.get("input")
    if not isinstance(value, dict):
        return Outcome.failed("the input is not an object")
    try:
        prompt = render(processor.prompt_template, value)
    except ValueError as exc:  # the same input fails the same way every time
        return Outcome.failed(str(exc))
    request = AiRequest(
        model=processor.model,
        query=prompt,
        language="en",
        country="US",
        seed=str(claim.execution_id),
        attempt=claim.attempt,
        web_search=processor.web_search,
    )

    def response(answer: AiAnswer, cost: float | None, latency_ms: float) -> Outcome:
        return Outcome.succeeded(
            {
                "output": answer.text,
                "model": answer.model,
                "servedModel": answer.served.model,
                "usage": answer.served.usage.as_dict(),
                "cost": cost or 0.0,
                "simulated": answer.simulated,
                "latencyMs": latency_ms,
            },
            cost=cost or 0.0,
        )

    return await call_model(request, response)


# The job type's spec names it ("worker.executors.batches:EXECUTOR").
EXECUTOR = BatchExecutor()
