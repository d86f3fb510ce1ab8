"""The ``kb_sync`` executor: each execution is one planned batch of source rows, read,
embedded and upserted into its knowledge base (:func:`shared.kb.runs.write_batch`).

The work is blocking (a source database, numpy) and CPU-bound, so it runs in a thread
beside the event loop; the type's group size is 1, so a run's batches are spread over
the workers (one execution-worker process per core).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from shared.engine.claim import Claim
from shared.engine.job_types import Report
from shared.engine.outcomes import Outcome
from shared.kb.runs import BatchFailed, write_batch


def run_batch(claim: Claim) -> Outcome:
    try:
        counts = write_batch(claim.job_id, claim.item)
    except BatchFailed as exc:
        return Outcome.failed(str(exc), retryable=exc.retryable)
    return Outcome.succeeded(counts)


class KbSyncExecutor:
    async def execute(self, claims: Sequence[Claim], report: Report) -> None:
        for claim in claims:  # one by one: each is CPU work in this process
            report(claim, await asyncio.to_thread(run_batch, claim))


# The job type's spec names it ("worker.executors.kb_sync:EXECUTOR").
EXECUTOR = KbSyncExecutor()
