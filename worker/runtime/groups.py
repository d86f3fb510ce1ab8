"""One group message: wait for room, claim the group, start it on the event loop, return.

The task returns, and its message is acknowledged, while the group's calls still run.
That is safe only because every execution it keeps is claimed first: leased to this
worker, which renews nothing but its heartbeat. If the process dies after the ack (kill
-9, a lost host), the sweep releases its leases once its heartbeat is
``JOBYARD_WORKER_DEAD_AFTER_SECONDS`` old and dispatch hands them out again; a lease also
ends after ``JOBYARD_LEASE_SECONDS`` in a live worker (a hung call). Executions of the
message that were not claimed (duplicates, stale ids, retries not yet due) are dropped or
published again before the ack, as before. A message whose task dies before it claims
(the process is killed while the claimer waits for room) is not acknowledged: Redis
gives it back, or the sweep presumes a dead worker's prefetched messages lost.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

from shared import logs, tracing
from shared.db import connection_scope
from shared.engine.claim import Claim, claim_group, seconds_until_due
from shared.engine.job_types import executor_for
from shared.engine.outcomes import Outcome
from shared.messaging import publisher
from worker.runtime import Runtime, current_runtime, group_events
from worker.runtime.capacity import CapacityClosed
from worker.runtime.completer import Completer, Completion, hand_back_to_dispatch

log = logging.getLogger(__name__)

# An executor that could not reach the database defers its group this long.
DATABASE_RETRY_SECONDS = 2.0


def run_group(execution_ids: Sequence[uuid.UUID], task_id: str | None = None) -> dict[str, int]:
    """Run one ``executions.run`` message (task ``task_id``); returns what happened (for
    logs and Flower: the task's end, in Flower, is sent once the group's executions end,
    see :mod:`worker.runtime.group_events`)."""
    runtime = current_runtime()
    try:
        reserved = runtime.capacity.reserve(len(execution_ids))
    except CapacityClosed:  # shutting down: never claimed, so dispatch hands them out again
        hand_back_to_dispatch(list(execution_ids))
        return {"handed_back": len(execution_ids)}
    try:
        with connection_scope() as connection:
            claims = claim_group(connection, execution_ids, runtime.worker_id)
            claimed = {c.execution_id for c in claims}
            unclaimed = [i for i in execution_ids if i not in claimed]
            early = seconds_until_due(connection, unclaimed)
    except BaseException:
        runtime.capacity.release(reserved)
        raise
    # The places of what was not claimed are free again; the broker is short of the
    # group just taken: dispatch is topped up (debounced, by the refiller thread).
    runtime.capacity.release(reserved - min(reserved, len(claims)))
    runtime.refiller.request()
    if early:  # delivered before their retry time (a restored message): wait for it
        unpublished = publisher.publish_executions(list(early.items()))
        if unpublished:
            hand_back_to_dispatch(unpublished)
    summary = {"claimed": len(claims), "early": len(early)}
    summary["dropped"] = len(execution_ids) - len(claims) - len(early)
    if claims:
        task = group_events.defer(task_id, summary)
        with logs.bound(**group_ids(claims)):
            start(claims, runtime, reserved_for=min(reserved, len(claims)), task=task)
    return summary


def group_ids(claims: Sequence[Claim]) -> dict[str, Any]:
    """The ids a group's log lines carry: its job (a group is one job's, as dispatch hands
    them out; ``job_ids`` otherwise) and organisation."""
    job_ids = sorted({str(c.job_id) for c in claims})
    organisations = {c.organisation_id for c in claims}
    ids: dict[str, Any] = {"job_id": job_ids[0]} if len(job_ids) == 1 else {"job_ids": job_ids}
    if len(organisations) == 1:
        ids["organisation_id"] = organisations.pop()
    return ids


def start(
    claims: list[Claim],
    runtime: Runtime,
    reserved_for: int,
    task: group_events.GroupTask | None = None,
) -> None:
    """Hand the claims to the event loop; the first ``reserved_for`` hold a place each
    (all of them, unless the group was larger than the whole capacity), given back when
    its outcome is reported. The group is logged, and the end of its ``task`` sent, when
    its last outcome is written."""
    completion = Completion(len(claims), on_done=log_group(claims, runtime, task))
    holding = {c.execution_id for c in claims[:reserved_for]}

    def reported(claim: Claim) -> None:
        if claim.execution_id in holding:
            runtime.capacity.release(1)

    by_type: dict[str, list[Claim]] = defaultdict(list)
    for claim in claims:
        by_type[claim.job_type].append(claim)
    # The loop runs the group after this task has returned, in a context of its own: the
    # task's trace goes with it (None while tracing is off).
    trace_context = tracing.current_context()
    for job_type, group in by_type.items():
        runtime.loop.submit(
            execute(job_type, group, runtime.completer, completion, reported, trace_context)
        )


def log_group(
    claims: list[Claim], runtime: Runtime, task: group_events.GroupTask | None = None
) -> Callable[[Completion], None]:
    """What a group's end does: log it, send its task's end to Flower (when the task
    deferred it), and ask for a fill (a group's worth of places is free; the claims that
    will take it ask too, but a fill that failed or found nothing ready then is tried
    again here, not only at the next sweep)."""

    def done(completion: Completion) -> None:
        runtime.refiller.request()
        if task is not None:
            group_events.send_end(task, completion.ends, completion.errors)
        summary = {
            "claimed": len(claims),
            "counted": completion.counted,
            "not_counted": completion.not_counted,
        }
        with logs.bound(**completion.log_ids):
            log.info(
                "group ran: %d executions claimed, %d counted, %d not counted",
                len(claims),
                completion.counted,
                completion.not_counted,
                extra={"execution_ids": [str(c.execution_id) for c in claims], **summary},
            )

    return done


async def execute(
    job_type: str,
    claims: list[Claim],
    completer: Completer,
    completion: Completion,
    reported: Callable[[Claim], None],
    trace_context: Any = None,
) -> None:
    """Run a job type's executor over its claims; every claim gets exactly one outcome,
    and ``reported(claim)`` is called once per claim, when its outcome is. With a
    ``trace_context`` (tracing on), the run is a span of that trace, and the provider
    calls its children."""
    reported_ids: set[uuid.UUID] = set()

    def report(claim: Claim, outcome: Outcome) -> None:
        if claim.execution_id in reported_ids:  # an executor reporting twice: first one wins
            return
        reported_ids.add(claim.execution_id)
        completer.submit(claim, outcome, completion)
        reported(claim)

    fallback = Outcome.failed("internal error: the executor reported no outcome", retryable=True)
    try:
        with tracing.execution_span(
            trace_context,
            f"execute/{job_type}",
            job_type=job_type,
            job_id=claims[0].job_id if claims else None,
            executions=len(claims),
        ):
            await executor_for(job_type).execute(claims, report)
    except DBAPIError as exc:  # the database is away for a moment: no attempt is spent
        log.warning("executor of %s: database unavailable (%s); deferred", job_type, exc)
        fallback = Outcome.deferred(DATABASE_RETRY_SECONDS)
    except Exception as exc:  # a bug, or no executor here: bounded by max_attempts
        log.exception("executor of %s failed on a group of %d", job_type, len(claims))
        fallback = Outcome.failed(f"internal error: {exc!r}"[:1000], retryable=True)
    for claim in claims:
        if claim.execution_id not in reported_ids:
            report(claim, fallback)
