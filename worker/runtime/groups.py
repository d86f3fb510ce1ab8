"""One group: claim it, run it on the event loop, wait until its outcomes are written."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

from shared import logs
from shared.db import connection_scope
from shared.engine import dispatch
from shared.engine.claim import Claim, claim_group, seconds_until_due
from shared.engine.outcomes import Outcome
from shared.engine.registry import executor_for
from shared.messaging import publisher
from worker.runtime import current_runtime
from worker.runtime.completer import Completer, Completion, hand_back_to_dispatch

log = logging.getLogger(__name__)

# However long a group runs, its task waits for it (the lease bounds an attempt); this
# only keeps a wedged loop from holding a pool thread forever.
GROUP_WAIT_SECONDS = 24 * 3600.0
# An executor that could not reach the database defers its group this long.
DATABASE_RETRY_SECONDS = 2.0


def run_group(execution_ids: Sequence[uuid.UUID]) -> dict[str, int]:
    """Run one ``executions.run`` message; returns what happened (for logs and Flower)."""
    runtime = current_runtime()
    with connection_scope() as connection:
        claims = claim_group(connection, execution_ids, runtime.worker_id)
        claimed = {c.execution_id for c in claims}
        unclaimed = [i for i in execution_ids if i not in claimed]
        early = seconds_until_due(connection, unclaimed)
    if early:  # delivered before their retry time (a restored message): wait for it
        unpublished = publisher.publish_executions(list(early.items()))
        if unpublished:
            hand_back_to_dispatch(unpublished)
    summary = {"claimed": len(claims), "early": len(early)}
    summary["dropped"] = len(execution_ids) - len(claims) - len(early)
    if not claims:
        return summary
    with logs.bound(**group_ids(claims)):
        return _run(claims, runtime, summary)


def group_ids(claims: Sequence[Claim]) -> dict[str, Any]:
    """The ids a group's log lines carry: its job (a group is one job's, as dispatch hands
    them out; ``job_ids`` otherwise) and organisation."""
    job_ids = sorted({str(c.job_id) for c in claims})
    organisations = {c.organisation_id for c in claims}
    ids: dict[str, Any] = {"job_id": job_ids[0]} if len(job_ids) == 1 else {"job_ids": job_ids}
    if len(organisations) == 1:
        ids["organisation_id"] = organisations.pop()
    return ids


def _run(claims: list[Claim], runtime: Any, summary: dict[str, int]) -> dict[str, int]:
    completion = Completion(len(claims))
    by_type: dict[str, list[Claim]] = defaultdict(list)
    for claim in claims:
        by_type[claim.job_type].append(claim)
    futures = [
        runtime.loop.submit(execute(job_type, group, runtime.completer, completion))
        for job_type, group in by_type.items()
    ]
    for future in futures:
        future.result(GROUP_WAIT_SECONDS)
    completion.wait(GROUP_WAIT_SECONDS)
    summary["counted"] = completion.counted
    summary["not_counted"] = completion.not_counted
    log.info(
        "group ran: %d executions claimed, %d counted, %d not counted",
        summary["claimed"],
        completion.counted,
        completion.not_counted,
        extra={"execution_ids": [str(c.execution_id) for c in claims], **summary},
    )
    dispatch.fill()  # a slot is free: hand the next group out
    return summary


async def execute(
    job_type: str, claims: list[Claim], completer: Completer, completion: Completion
) -> None:
    """Run a job type's executor over its claims; every claim gets exactly one outcome."""
    reported: set[uuid.UUID] = set()

    def report(claim: Claim, outcome: Outcome) -> None:
        if claim.execution_id in reported:  # an executor reporting twice: first one wins
            return
        reported.add(claim.execution_id)
        completer.submit(claim, outcome, completion)

    fallback = Outcome.failed("internal error: the executor reported no outcome", retryable=True)
    try:
        await executor_for(job_type).execute(claims, report)
    except DBAPIError as exc:  # the database is away for a moment: no attempt is spent
        log.warning("executor of %s: database unavailable (%s); deferred", job_type, exc)
        fallback = Outcome.deferred(DATABASE_RETRY_SECONDS)
    except Exception as exc:  # a bug, or no executor here: bounded by max_attempts
        log.exception("executor of %s failed on a group of %d", job_type, len(claims))
        fallback = Outcome.failed(f"internal error: {exc!r}"[:1000], retryable=True)
    for claim in claims:
        if claim.execution_id not in reported:
            report(claim, fallback)
