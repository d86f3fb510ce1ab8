"""The job-finished outbox: one event per terminal transition, whoever finishes last."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import update

from shared.db import session_scope
from shared.engine import outbox
from shared.engine.cancel import cancel_executions
from shared.engine.claim import Claim
from shared.engine.fanout import fan_out_job
from shared.engine.outcomes import Outcome
from shared.models import Execution, utcnow
from tests.engine.conftest import claim, execution_ids, finish, make_job, outbox_rows
from tests.support import assert_counters_exact

pytestmark = pytest.mark.every_database


def consumers() -> int:
    """Consumers of job.finished registered now (domains register theirs on import, so
    counting at this module's import could miss one imported later in the session)."""
    return len(outbox.consumers_of(outbox.JOB_FINISHED))


def finish_racing(claimed: Claim, barrier: threading.Barrier, ended: list[list[uuid.UUID]]) -> None:
    barrier.wait(5)
    ended.append(finish([(claimed, Outcome.succeeded({}))]).jobs_ended)


def test_two_finishers_racing_write_exactly_one_event(organisation_id: uuid.UUID) -> None:
    """The last two executions finish in two transactions at once: one of them ends the
    job, and only that one writes the event (repeated to catch an unlucky interleaving)."""
    assert consumers() >= 1
    for _ in range(10):
        job_id = make_job(organisation_id, 2)
        fan_out_job(job_id)
        first, second = claim(execution_ids(job_id))
        barrier = threading.Barrier(2)
        ended: list[list[uuid.UUID]] = []
        threads = [
            threading.Thread(target=finish_racing, args=(c, barrier, ended))
            for c in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(len(e) for e in ended) == [0, 1]
        assert outbox_rows(job_id) == consumers()
        assert assert_counters_exact(job_id).status == "completed"


def test_a_cancel_writes_one_event_and_a_second_cancel_none(organisation_id: uuid.UUID) -> None:
    job_id = make_job(organisation_id, 3)
    fan_out_job(job_id)
    with session_scope() as session:
        cancel_executions(session, job_id)
    assert outbox_rows(job_id) == consumers()


def test_a_failing_consumer_gets_its_events_back_later(organisation_id: uuid.UUID) -> None:
    calls: list[int] = []

    def flaky(_session: object, events: object) -> None:
        calls.append(1)
        raise RuntimeError("down")

    outbox.register_consumer("test.flaky", outbox.JOB_FINISHED, flaky)
    try:
        job_id = make_job(organisation_id, 1)
        fan_out_job(job_id)
        (only,) = claim(execution_ids(job_id))
        finish([(only, Outcome.succeeded({}))])
        assert outbox.drain(session_scope)["test.flaky"] == 0
        assert calls and outbox_rows(job_id) >= 1  # kept, with a delay before the next try
        calls.clear()
        outbox.drain(session_scope)
        assert calls == []  # not yet due again
    finally:
        outbox._consumers.pop("test.flaky", None)


def test_a_late_costly_attempt_after_the_end_writes_no_second_event(
    organisation_id: uuid.UUID,
) -> None:
    """An attempt whose lease was lost reports after the job ended: its cost is added to
    the finished job, and the job does not end a second time."""
    job_id = make_job(organisation_id, 1)
    fan_out_job(job_id)
    ids = execution_ids(job_id)
    (stale,) = claim(ids)
    with session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id == ids[0]).values(lease_expires_at=utcnow())
        )
    (live,) = claim(ids, "worker-b")
    assert finish([(live, Outcome.succeeded({}))]).jobs_ended == [job_id]
    assert finish([(stale, Outcome.succeeded({}, cost=0.5))]).jobs_ended == []
    assert outbox_rows(job_id) == consumers()
    assert assert_counters_exact(job_id).cost == 0.5
