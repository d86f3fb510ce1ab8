"""The batch completer: outcomes from every group of the process, written in batches.

Executors report outcomes one by one from the event loop; this thread collects them and
writes each batch in one transaction (:func:`shared.engine.finish.finish_batch`) once it
holds ``JOBYARD_FINISH_BATCH_SIZE`` outcomes or ``JOBYARD_FINISH_FLUSH_SECONDS`` after the
first one came. After the commit it publishes the retries (each execution alone, with its
countdown) and, when a job ended, asks for the outbox to be drained. A group's
:class:`Completion` counts its outcomes down and logs the group when the last is written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from shared import logs
from shared.db import connection_scope
from shared.engine.claim import Claim
from shared.engine.finish import FlushReport, finish_batch
from shared.engine.outcomes import Outcome, OutcomeKind
from shared.messaging import publisher
from shared.messaging.labels import JobLabel
from shared.metrics import (
    EXECUTION_RETRIES,
    EXECUTIONS_FINISHED,
    FINISH_BATCH_SIZE,
    provider_of,
)
from shared.models import Execution
from shared.settings import get_settings

log = logging.getLogger(__name__)

# A batch whose transaction fails (the database restarts, a deadlock with a cancel) is
# tried again this long before its outcomes are given up (their leases then lapse and
# the executions run again).
GIVE_UP_AFTER_SECONDS = 120.0


# How an execution's outcome ended, as a group's tally counts it (a failed attempt that is
# tried again is ``retrying``; a throttle's ``deferred`` was no attempt; ``not_counted``:
# the lease was gone — a cancel, or another attempt took over — or the write given up).
SUCCEEDED = "succeeded"
FAILED = "failed"
RETRYING = "retrying"
DEFERRED = "deferred"
NOT_COUNTED = "not_counted"
ENDS = (SUCCEEDED, FAILED, RETRYING, DEFERRED, NOT_COUNTED)
# A group keeps this many distinct errors of its failed executions, and this much of each
# (its task's end quotes them: worker.runtime.group_events).
ERRORS_KEPT = 3
ERROR_CHARS_KEPT = 200


def end_of(outcome: Outcome, status: str | None) -> str:
    """How an outcome ended, given the execution's new status (None: not counted)."""
    if status is None:
        return NOT_COUNTED
    if outcome.kind is OutcomeKind.DEFERRED:
        return DEFERRED
    return {"success": SUCCEEDED, "failed": FAILED}.get(status, RETRYING)


class Completion:
    """Counts one group's outcomes down to zero, then calls ``on_done`` (in the thread
    that wrote the last outcome)."""

    def __init__(self, expected: int, on_done: Callable[[Completion], None] | None = None) -> None:
        self._remaining = expected
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._on_done = on_done
        self.counted = 0  # outcomes recorded
        self.not_counted = 0  # lease lost, or given up
        self.ends = dict.fromkeys(ENDS, 0)  # how the outcomes ended
        self.errors: list[str] = []  # the first distinct errors of failed executions
        # The group's task's ids (task_id, job_id, organisation_id): the completer thread
        # writes its outcomes, and its log lines name the task they came from.
        self.log_ids = logs.current()
        if expected <= 0:
            self._done.set()

    def count_down(
        self, *, counted: bool, end: str = NOT_COUNTED, error: str | None = None
    ) -> None:
        with self._lock:
            self._remaining -= 1
            if counted:
                self.counted += 1
            else:
                self.not_counted += 1
            self.ends[end] += 1
            if end == FAILED and error and len(self.errors) < ERRORS_KEPT:
                shown = error[:ERROR_CHARS_KEPT]
                if shown not in self.errors:
                    self.errors.append(shown)
            done = self._remaining == 0
            if done:
                self._done.set()
        if done and self._on_done is not None:
            try:
                self._on_done(self)
            except Exception:  # a log line must never stop the completer
                log.exception("completer: a group's end could not be reported")

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


Item = tuple[Claim, Outcome, Completion]


class Completer:
    """One thread per process writing outcomes in batches (see the module docstring)."""

    def __init__(self) -> None:
        settings = get_settings()
        self.batch_size = settings.finish_batch_size
        self.flush_seconds = settings.finish_flush_seconds
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._unwritten = 0  # submitted, not yet written (or given up)
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="jobyard-completer", daemon=True)
        self._thread.start()

    def submit(self, claim: Claim, outcome: Outcome, completion: Completion) -> None:
        """Queue an outcome (thread-safe, never blocks)."""
        with self._idle:
            self._unwritten += 1
        self._queue.put((claim, outcome, completion))

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every submitted outcome is written."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unwritten == 0, timeout)

    def _written(self, count: int) -> None:
        with self._idle:
            self._unwritten -= count
            if not self._unwritten:
                self._idle.notify_all()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.flush_seconds
            while len(batch) < self.batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            try:
                self.flush(batch)
            except Exception:  # never let the thread die: no outcome would be written again
                log.exception("completer: a batch of %d outcomes was lost", len(batch))
                for _, _, completion in batch:
                    completion.count_down(counted=False)
            finally:
                self._written(len(batch))

    def flush(self, batch: Sequence[Item]) -> None:
        report = self._write(batch)
        statuses: dict[uuid.UUID, str | None] = {}
        if report is not None:
            statuses = {f.claim.execution_id: f.status for f in report.finished}
            record_metrics(batch, report)
            self._after_commit(report)
            log_finishes(batch, report)
        for claim, outcome, completion in batch:
            status = statuses.get(claim.execution_id)
            completion.count_down(
                counted=status is not None, end=end_of(outcome, status), error=outcome.error
            )

    def _write(self, batch: Sequence[Item]) -> FlushReport | None:
        started = time.monotonic()
        delay = 0.1
        while True:
            try:
                with connection_scope() as connection:
                    return finish_batch(connection, [(c, o) for c, o, _ in batch])
            except DBAPIError as exc:
                if time.monotonic() - started > GIVE_UP_AFTER_SECONDS:
                    log.error("completer: giving up %d outcomes: %s", len(batch), exc)
                    return None
                log.warning("completer: writing %d outcomes failed (%s); again", len(batch), exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    @staticmethod
    def _after_commit(report: FlushReport) -> None:
        retried = [
            f for f in report.finished if f.status is not None and f.republish_in is not None
        ]
        if retried:
            again = [(f.claim.execution_id, f.republish_in) for f in retried]
            labels = {f.claim.execution_id: label_of(f.claim) for f in retried}
            unpublished = publisher.publish_executions(again, labels)
            if unpublished:
                hand_back_to_dispatch(unpublished)
        if report.jobs_ended or report.events_written:
            publisher.publish_outbox_drain()


def label_of(claim: Claim) -> JobLabel:
    """How a retry's message shows its job in Flower."""
    return JobLabel(claim.job_id, claim.organisation_id, claim.job_type)


def record_metrics(batch: Sequence[Item], report: FlushReport) -> None:
    """Count a committed batch: its size, and each attempt by type, status and provider
    (a deferred attempt was not one: the throttle counts those)."""
    FINISH_BATCH_SIZE.observe(len(batch))
    deferred = {c.execution_id for c, o, _ in batch if o.kind is OutcomeKind.DEFERRED}
    for finished in report.finished:
        claim = finished.claim
        if claim.execution_id in deferred:
            continue
        provider = provider_of(claim.item)
        status = finished.status or "lease_lost"
        EXECUTIONS_FINISHED.labels(claim.job_type, status, provider).inc()
        if status == "retrying":
            EXECUTION_RETRIES.labels(claim.job_type, provider).inc()


def log_finishes(batch: Sequence[Item], report: FlushReport) -> None:
    """A line per execution that failed or will retry (DEBUG for a success), and one per
    job this batch ended, each with the ids of the group's task it came from."""
    items = {claim.execution_id: (outcome, completion) for claim, outcome, completion in batch}
    for finished in report.finished:
        if finished.status is None:
            continue
        claim = finished.claim
        outcome, completion = items[claim.execution_id]
        level = logging.DEBUG if finished.status == "success" else logging.INFO
        if finished.status == "failed":
            level = logging.WARNING
        if log.isEnabledFor(level):
            with logs.bound(**completion.log_ids):
                log.log(
                    level,
                    "execution %s of job %s: %s (attempt %d of %d)%s",
                    claim.execution_id,
                    claim.job_id,
                    finished.status,
                    claim.attempt,
                    claim.max_attempts,
                    f": {outcome.error}" if outcome.error else "",
                    extra={"execution_id": str(claim.execution_id), "job_id": str(claim.job_id)},
                )
    for job_id, status in report.ended_statuses.items():
        ender = next(claim for claim, _, _ in batch if claim.job_id == job_id)
        _, completion = items[ender.execution_id]
        with logs.bound(**completion.log_ids):
            log.info(
                "job %s finished: %s",
                job_id,
                status,
                extra={"job_id": str(job_id), "job_status": status},
            )


def hand_back_to_dispatch(execution_ids: list[uuid.UUID]) -> None:
    """Executions whose message could not be published: dispatch hands them out when due."""
    try:
        with connection_scope() as connection:
            connection.execute(
                update(Execution)
                .where(Execution.id.in_(execution_ids), Execution.lease_token.is_(None))
                .values(dispatched_at=None)
            )
    except DBAPIError:
        log.warning("%d executions left for the sweep to find", len(execution_ids))
