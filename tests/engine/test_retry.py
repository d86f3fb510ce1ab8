"""Retry on demand (``engine.retry.retry_failed``): the failed executions of a finished job
run again with exact counters, the job ends again with a new ``job.finished``, and what
cannot be retried (a running, completed or canceled job; executions not failed or not of
the job; two retries at once; a retry racing a cancel; a stale attempt) changes nothing it
must not — on each database."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from shared.db import connection_scope, session_scope, unit_of_work
from shared.engine import outbox
from shared.engine.cancel import cancel_execution, cancel_executions
from shared.engine.fanout import fan_out_job
from shared.engine.outcomes import Outcome
from shared.engine.quotas import QuotaExceeded
from shared.engine.recovery import SweepReport, release_leases
from shared.engine.retry import JOB_RETRIED, retry_failed
from shared.errors import Conflict, NotFound
from shared.models import Execution, Job, utcnow
from shared.settings import reset_settings_cache
from tests.engine.conftest import TEST_TYPE, claim, execution, execution_ids, finish, make_job
from tests.support import assert_counters_exact, job_row

pytestmark = pytest.mark.every_database

# Events seen by in-transaction handlers registered for these tests (never rows: other
# tests count outbox rows).
seen: list[tuple[str, uuid.UUID | None, dict[str, Any]]] = []


def _record(_connection: Any, events: Sequence[outbox.Event]) -> None:
    seen.extend((e.topic, e.job_id, e.payload) for e in events)


outbox.register_in_transaction("test.retry.finished", outbox.JOB_FINISHED, _record)
outbox.register_in_transaction("test.retry.retried", JOB_RETRIED, _record)


def events(topic: str, job_id: uuid.UUID) -> list[dict[str, Any]]:
    return [payload for t, j, payload in seen if t == topic and j == job_id]


def finished_job(
    organisation_id: uuid.UUID, outcomes: Sequence[Outcome], *, max_attempts: int = 3
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A job of ``len(outcomes)`` items, fanned out, each attempted once with its outcome."""
    job_id = make_job(organisation_id, len(outcomes), max_attempts=max_attempts)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    attempt(ids, outcomes)
    return job_id, ids


def attempt(ids: Sequence[uuid.UUID], outcomes: Sequence[Outcome]) -> None:
    """Claim ``ids`` and finish each with its outcome (claims come back in any order)."""
    claims = {c.execution_id: c for c in claim(ids)}
    finish([(claims[i], outcome) for i, outcome in zip(ids, outcomes, strict=True)])


def ok(cost: float = 0.0) -> Outcome:
    return Outcome.succeeded({"ok": True}, cost=cost)


def bad(cost: float = 0.0) -> Outcome:
    return Outcome.failed("HTTP 400: refused", cost=cost, result={"partial": True})


def retry(
    organisation_id: uuid.UUID,
    job_id: uuid.UUID,
    ids: Sequence[uuid.UUID] | None = None,
    job_type: str | None = None,
) -> Job:
    with unit_of_work() as work:
        return retry_failed(work, organisation_id, job_id, job_type, ids)


def snapshot(job_id: uuid.UUID) -> tuple[Any, ...]:
    job = assert_counters_exact(job_id)
    return (job.status, job.pending, job.retrying, job.success, job.failed, job.finished_at)


def test_the_failed_ones_run_again_and_the_job_ends_again(organisation_id: uuid.UUID) -> None:
    job_id, ids = finished_job(organisation_id, [ok(0.5), bad(0.25), ok(), bad(0.25)])
    assert job_row(job_id).status == "partial_failed"
    assert len(events(outbox.JOB_FINISHED, job_id)) == 1

    job = retry(organisation_id, job_id, job_type=TEST_TYPE)

    assert (job.status, job.pending, job.success, job.failed) == ("processing", 2, 2, 0)
    assert job.finished_at is None
    job = assert_counters_exact(job_id)
    assert job.cost == 1.0  # cumulative: the failed attempts were spent
    assert events(JOB_RETRIED, job_id) == [{"type": TEST_TYPE, "executions": 2}]
    for execution_id in (ids[1], ids[3]):
        row = execution(execution_id)
        assert (row.status, row.attempts, row.error, row.result) == ("pending", 0, None, None)
        assert row.finished_at is None and row.lease_token is None
        assert row.next_attempt_at is None and row.cost == 0.25
    assert execution(ids[0]).status == "success"  # the others are left alone

    claims = claim([ids[1], ids[3]])
    assert [c.attempt for c in claims] == [1, 1]  # a fresh attempt budget
    report = finish([(c, ok()) for c in claims])
    assert report.jobs_ended == [job_id]
    job = assert_counters_exact(job_id)
    assert (job.status, job.success, job.failed) == ("completed", 4, 0)
    assert job.finished_at is not None
    assert [e["status"] for e in events(outbox.JOB_FINISHED, job_id)] == [
        "partial_failed",
        "completed",
    ]


def test_only_the_named_ones_run_again(organisation_id: uuid.UUID) -> None:
    job_id, ids = finished_job(organisation_id, [bad(), bad(), bad()])
    assert job_row(job_id).status == "failed"
    job = retry(organisation_id, job_id, [ids[2], ids[2]])  # a repeated id counts once
    assert (job.pending, job.failed) == (1, 2)
    assert [execution(i).status for i in ids] == ["failed", "failed", "pending"]
    assert_counters_exact(job_id)


def test_an_exhausted_job_gets_a_fresh_budget(organisation_id: uuid.UUID) -> None:
    """One attempt allowed: the retried execution can be claimed again all the same."""
    job_id, ids = finished_job(organisation_id, [bad()], max_attempts=1)
    assert claim(ids) == []
    retry(organisation_id, job_id)
    assert len(claim(ids)) == 1


@pytest.mark.parametrize("case", ["another job's", "unknown"])
def test_an_execution_not_of_the_job_is_not_found_and_nothing_changes(
    organisation_id: uuid.UUID, case: str
) -> None:
    job_id, ids = finished_job(organisation_id, [bad(), bad()])
    _, others = finished_job(organisation_id, [bad()])
    stranger = others[0] if case == "another job's" else uuid.uuid4()
    before = snapshot(job_id)
    with pytest.raises(NotFound, match=str(stranger)):
        retry(organisation_id, job_id, [ids[0], stranger])
    assert snapshot(job_id) == before
    assert execution(ids[0]).status == "failed"


def test_a_named_execution_that_did_not_fail_is_refused_and_nothing_changes(
    organisation_id: uuid.UUID,
) -> None:
    """The guard of the UPDATE (``status = 'failed'``): a succeeded execution never moves."""
    job_id, ids = finished_job(organisation_id, [ok(), bad()])
    before = snapshot(job_id)
    with pytest.raises(Conflict, match=str(ids[0])):
        retry(organisation_id, job_id, [ids[0], ids[1]])
    assert snapshot(job_id) == before
    assert [execution(i).status for i in ids] == ["success", "failed"]
    assert events(JOB_RETRIED, job_id) == []


def test_another_organisation_or_type_does_not_find_the_job(organisation_id: uuid.UUID) -> None:
    job_id, _ = finished_job(organisation_id, [bad()])
    with pytest.raises(NotFound):
        retry(uuid.uuid4(), job_id)
    with pytest.raises(NotFound):
        retry(organisation_id, job_id, job_type="batch")
    with pytest.raises(NotFound):
        retry(organisation_id, uuid.uuid4())
    assert job_row(job_id).status == "failed"


def test_a_job_still_running_is_refused(organisation_id: uuid.UUID) -> None:
    """The job-finished check: a job with one failed execution and one running is not
    retried (its failed one is left as it is)."""
    job_id = make_job(organisation_id, 2)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    finish([(claim(ids[:1])[0], bad())])
    before = snapshot(job_id)
    assert before[0] == "processing"
    with pytest.raises(Conflict, match="has not finished"):
        retry(organisation_id, job_id)
    with pytest.raises(Conflict, match="has not finished"):
        retry(organisation_id, job_id, [ids[0]])
    assert snapshot(job_id) == before
    assert execution(ids[0]).status == "failed"


def test_a_completed_job_has_nothing_to_retry(organisation_id: uuid.UUID) -> None:
    job_id, _ = finished_job(organisation_id, [ok()])
    with pytest.raises(Conflict, match="nothing to retry"):
        retry(organisation_id, job_id)
    assert job_row(job_id).status == "completed"


def test_a_canceled_job_stays_canceled(organisation_id: uuid.UUID) -> None:
    job_id = make_job(organisation_id, 3)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    finish([(claim(ids[:1])[0], ok())])
    with session_scope() as session:
        cancel_executions(session, job_id)
    before = snapshot(job_id)
    with pytest.raises(Conflict, match="canceled"):
        retry(organisation_id, job_id)
    with pytest.raises(Conflict, match="canceled"):
        retry(organisation_id, job_id, ids[1:])
    assert snapshot(job_id) == before


def test_executions_canceled_one_by_one_are_retried_only_when_named(
    organisation_id: uuid.UUID,
) -> None:
    job_id = make_job(organisation_id, 3)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    with session_scope() as session:
        assert cancel_execution(session, job_id, ids[0])
    attempt(ids[1:], [bad(), ok()])
    assert job_row(job_id).status == "partial_failed"
    job = retry(organisation_id, job_id)
    assert [execution(i).status for i in ids] == ["failed", "pending", "success"]
    assert (job.pending, job.failed) == (1, 1)
    finish([(claim(ids[1:2])[0], ok())])
    assert job_row(job_id).status == "partial_failed"
    job = retry(organisation_id, job_id, ids[:1])
    assert (job.status, job.pending, job.failed) == ("processing", 1, 0)
    assert_counters_exact(job_id)


def test_a_job_retried_again_while_active_is_refused(organisation_id: uuid.UUID) -> None:
    job_id, ids = finished_job(organisation_id, [bad(), bad()])
    retry(organisation_id, job_id, ids[:1])
    before = snapshot(job_id)
    with pytest.raises(Conflict, match="has not finished"):
        retry(organisation_id, job_id)
    assert snapshot(job_id) == before
    assert events(JOB_RETRIED, job_id) == [{"type": TEST_TYPE, "executions": 1}]


def test_a_stale_attempt_of_a_canceled_execution_is_not_counted_after_a_retry(
    organisation_id: uuid.UUID,
) -> None:
    """An attempt still running when its execution was canceled finishes after the retry:
    its lease is gone, so only the retried attempt counts."""
    job_id = make_job(organisation_id, 2)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    stale = claim(ids[:1])[0]
    with session_scope() as session:
        assert cancel_execution(session, job_id, ids[0])
    finish([(claim(ids[1:])[0], ok())])
    retry(organisation_id, job_id, ids[:1])
    assert finish([(stale, ok())]).finished[0].status is None  # not counted
    assert snapshot(job_id)[:5] == ("processing", 1, 0, 1, 0)
    finish([(claim(ids[:1])[0], ok())])
    assert snapshot(job_id)[:5] == ("completed", 0, 0, 2, 0)


@pytest.fixture
def quota_of_two(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOBYARD_MAX_ACTIVE_EXECUTIONS_PER_ORGANISATION", "2")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def test_the_quota_of_unfinished_work_applies(
    organisation_id: uuid.UUID, quota_of_two: None
) -> None:
    job_id, ids = finished_job(organisation_id, [bad(), bad(), bad()])
    before = snapshot(job_id)
    with pytest.raises(QuotaExceeded):
        retry(organisation_id, job_id)
    assert snapshot(job_id) == before
    assert retry(organisation_id, job_id, ids[:2]).pending == 2


def race(*actions: Any) -> list[BaseException | object]:
    """Run ``actions`` at once on threads; what each returned or raised."""
    barrier = threading.Barrier(len(actions))
    results: list[BaseException | object] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = actions[index]()
        except BaseException as error:  # reported to the test
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_retries_at_once_retry_each_execution_once(organisation_id: uuid.UUID) -> None:
    for _ in range(3):
        job_id, ids = finished_job(organisation_id, [bad(), ok(), bad(), bad()])
        results = race(
            lambda j=job_id: retry(organisation_id, j),
            lambda j=job_id, i=ids: retry(organisation_id, j, [i[0], i[2]]),
        )
        assert sorted(type(r).__name__ for r in results) == ["Conflict", "Job"], results
        job = assert_counters_exact(job_id)
        assert job.status == "processing" and job.success == 1
        assert len(events(JOB_RETRIED, job_id)) == 1


def test_a_retry_racing_a_cancel_leaves_exact_counters(organisation_id: uuid.UUID) -> None:
    """Whichever commits first, the other sees its result: retried then canceled (every
    retried execution ends canceled), or the cancel refused (the job had finished)."""
    for _ in range(3):
        job_id, ids = finished_job(organisation_id, [bad(), ok(), bad()])

        def cancel(j: uuid.UUID = job_id) -> None:
            with session_scope() as session:
                cancel_executions(session, j)

        results = race(lambda j=job_id: retry(organisation_id, j), cancel)
        assert isinstance(results[0], Job), results
        job = assert_counters_exact(job_id)
        if isinstance(results[1], Conflict):  # the cancel came first: the job had finished
            assert (job.status, job.pending, job.failed) == ("processing", 2, 0)
        else:
            assert results[1] is None, results
            assert (job.status, job.pending, job.success, job.failed) == ("canceled", 0, 1, 2)
            assert [execution(i).error for i in ids] == ["canceled", None, "canceled"]


def test_a_retry_racing_the_sweep_leaves_exact_counters(organisation_id: uuid.UUID) -> None:
    """The sweep fails an execution whose lease expired on its last attempt, which ends the
    job; a retry at the same moment is refused before (the job had not finished) or
    retries both failed executions after."""
    for _ in range(3):
        job_id = make_job(organisation_id, 2, max_attempts=1)
        fan_out_job(job_id)
        ids = execution_ids(job_id)
        attempt(ids[:1], [bad()])
        claim(ids[1:])  # its worker dies with it: the lease runs out, no attempt left
        with session_scope() as session:
            session.execute(
                update(Execution)
                .where(Execution.id == ids[1])
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )

        def sweep() -> None:
            with connection_scope() as connection:
                release_leases(connection, SweepReport())

        results = race(lambda j=job_id: retry(organisation_id, j), sweep)
        assert results[1] is None, results
        job = assert_counters_exact(job_id)
        if isinstance(results[0], Conflict):  # the retry came first: the job was running
            assert (job.status, job.failed) == ("failed", 2)
        else:
            assert isinstance(results[0], Job), results
            assert (job.status, job.pending, job.failed) == ("processing", 2, 0)
