"""A cancel that deadlocks with a worker is tried again, not failed (PostgreSQL).

The cancel updates every unfinished execution of a job while a worker's finish updates
some of them, each locking rows in its own order. Here a "worker" transaction locks the
job's last execution, the cancel (in another thread) locks the rest and waits for it, and
the worker then asks for the first: a deadlock, which PostgreSQL breaks by aborting the
cancel (the first to wait). The cancel must roll back to its savepoint, let the worker
finish, and succeed with exact counters.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import text, update

from shared.db import connection_scope, dialect_name, session_scope
from shared.engine.cancel import cancel_executions
from shared.engine.fanout import fan_out_job
from shared.models import Execution
from tests.engine.conftest import execution_ids, make_job
from tests.support import assert_counters_exact


def test_a_cancel_deadlocked_by_a_worker_is_tried_again(organisation_id: uuid.UUID) -> None:
    job_id = make_job(organisation_id, 20)
    fan_out_job(job_id)
    first, *_, last = execution_ids(job_id)
    errors: list[BaseException] = []
    with connection_scope() as worker:
        if dialect_name(worker) != "postgresql":
            pytest.skip("SQLite writers take turns from their first statement: no deadlock")
        # PostgreSQL looks for a cycle once a wait has lasted deadlock_timeout, in the
        # waiting process, and aborts that one: the worker's wait must not be checked
        # first, the cancel's (1 s, the default) must.
        worker.execute(text("SET LOCAL deadlock_timeout = '20s'"))
        worker.execute(update(Execution).where(Execution.id == last).values(attempts=0))

        def cancel() -> None:
            try:
                with session_scope() as session:
                    cancel_executions(session, job_id)
            except BaseException as error:
                errors.append(error)

        canceler = threading.Thread(target=cancel)
        canceler.start()
        time.sleep(0.4)  # the cancel has locked every row but the last, and waits for it
        # The worker asks for a row the cancel holds: a deadlock, found by the cancel's
        # check. Without the retry the cancel fails; with it, its savepoint is rolled back,
        # this statement gets its row, and the cancel waits for this commit.
        worker.execute(update(Execution).where(Execution.id == first).values(attempts=0))
    canceler.join(30)
    assert not canceler.is_alive()
    assert errors == []
    job = assert_counters_exact(job_id)
    assert job.status == "canceled" and job.failed == 20
