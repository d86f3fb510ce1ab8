"""Remove each guard of the engine in turn: the engine tests must fail every time.

    make mutations            # or: .venv/bin/python -m tests.mutations [first-index]

Each mutation deletes or weakens one guard (a WHERE condition, a lock, a bound) in the
source, runs ``tests/engine`` (or the tests it names) on each database where that guard
is what holds the invariant, and restores the file. A mutation the tests do not catch is
a guard no test protects. Exit status 1 if any survives.

Most of the engine's guards are the same SQL on both databases and are tried on both.
Some exist on one only: PostgreSQL's advisory locks and its set-based finish and insert;
SQLite's row-at-a-time finish and insert and its ``BEGIN IMMEDIATE`` (shared/sqlite.py),
which is what orders a cancel and a fan-out chunk there.
"""

import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
POSTGRESQL = ("postgresql",)
SQLITE = ("sqlite",)
BOTH = POSTGRESQL + SQLITE
WEBHOOK_CLAIM = "tests/engine/test_webhook_claim.py"
DISPATCH = "tests/engine/test_dispatch.py"
CAPACITY = "tests/engine/test_worker_capacity.py"
FANOUT_TESTS = "tests/engine/test_fanout.py"
SENDER_FAIRNESS = "tests/e2e/test_sender_fairness.py"
PERIODIC = "tests/engine/test_periodic.py"
PREPARATION = "tests/engine/test_preparation.py"
CANCEL_DEADLOCK = "tests/engine/test_cancel_deadlock.py"
REQUEST_TRANSACTIONS = "tests/api/test_request_transactions.py"
IDEMPOTENCY = "tests/api/test_idempotency.py"
IDEMPOTENCY_CRASH = "tests/e2e/test_idempotency_crash.py"
DASHBOARD = "tests/api/test_ui.py"
FLOWER = "tests/e2e/test_flower.py"
RETRY = "tests/engine/test_retry.py"
TRACES = "tests/e2e/test_traces.py"
TRACING_SETUP = "tests/unit/test_tracing.py"


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` (found exactly once in ``path``) by ``new``; ``tests`` must fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...] = ("tests/engine",)
    databases: tuple[str, ...] = BOTH


def run_tests(mutation: Mutation, database: str) -> tuple[bool, str]:
    """Run the mutation's tests on ``database``: (whether they failed, the line saying so)."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", *mutation.tests, "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**os.environ, "JOBYARD_TEST_DATABASE": database},
        capture_output=True,
        text=True,
        timeout=300,
    )
    failed = [out for out in run.stdout.splitlines() if out.startswith("FAILED")][:1]
    last = run.stdout.strip().splitlines()[-1:] or [run.stderr.strip()[-200:]]
    return run.returncode != 0, (failed or last)[0]


MUTATIONS = [
    Mutation(
        "claim: status guard",
        "shared/engine/claim.py",
        "            EXECUTIONS.c.status.in_(ACTIVE_EXECUTION_STATUSES),\n",
        "",
    ),
    Mutation(
        "claim: lease guard",
        "shared/engine/claim.py",
        "            or_(EXECUTIONS.c.lease_expires_at.is_(None), EXECUTIONS.c.lease_expires_at < now),\n",
        "",
    ),
    Mutation(
        "claim: retry-time guard",
        "shared/engine/claim.py",
        "            or_(EXECUTIONS.c.next_attempt_at.is_(None), EXECUTIONS.c.next_attempt_at <= now),\n",
        "",
    ),
    Mutation(
        "claim: attempts < max_attempts",
        "shared/engine/claim.py",
        "            EXECUTIONS.c.attempts < max_attempts,\n",
        "",
    ),
    Mutation(
        "finish: lease token guard",
        "shared/engine/finish.py",
        "WHERE e.id = v.id AND e.lease_token = v.token AND e.status = v.claimed_status",
        "WHERE e.id = v.id AND e.status = v.claimed_status",
        databases=POSTGRESQL,
    ),
    Mutation(
        "finish: claimed-status guard",
        "shared/engine/finish.py",
        "WHERE e.id = v.id AND e.lease_token = v.token AND e.status = v.claimed_status",
        "WHERE e.id = v.id AND e.lease_token = v.token",
        databases=POSTGRESQL,
    ),
    Mutation(
        "finish (SQLite): lease token guard",
        "shared/engine/finish.py",
        "                EXECUTIONS.c.lease_token == p.claim.lease_token,\n",
        "",
        databases=SQLITE,
    ),
    Mutation(
        "finish (SQLite): claimed-status guard",
        "shared/engine/finish.py",
        "                EXECUTIONS.c.status == p.claim.status,\n",
        "",
        databases=SQLITE,
    ),
    Mutation(
        "finish: retry only below max_attempts",
        "shared/engine/finish.py",
        "    if outcome.retryable and claim.attempt < claim.max_attempts:",
        "    if outcome.retryable:",
    ),
    Mutation(
        "fan-out: ON CONFLICT DO NOTHING",
        "shared/engine/fanout.py",
        "    ON CONFLICT (id) DO NOTHING\n",
        "",
        databases=POSTGRESQL,
    ),
    Mutation(
        "fan-out (SQLite): ON CONFLICT DO NOTHING",
        "shared/engine/fanout.py",
        "sqlite.insert(EXECUTIONS).on_conflict_do_nothing()",
        "sqlite.insert(EXECUTIONS)",
        databases=SQLITE,
    ),
    Mutation(
        "fan-out: stop at a cancel",
        "shared/engine/fanout.py",
        "    if canceled is not None:\n        return None\n",
        "",
    ),
    Mutation(
        "fan-out: job lock in the chunk",
        "shared/engine/fanout.py",
        "    lock_job(connection, job_id)\n    canceled",
        "    canceled",
        databases=POSTGRESQL,
    ),
    Mutation(
        "fan-out: the staging table is emptied at commit",
        "shared/engine/fanout.py",
        "    ) ON COMMIT DELETE ROWS\n",
        "    )\n",
        tests=(FANOUT_TESTS,),
        databases=POSTGRESQL,
    ),
    Mutation(
        "fan-out: the ids COPY writes are UUIDv5",
        "shared/engine/fanout.py",
        "        digest[6] = (digest[6] & 0x0F) | 0x50  # version 5\n",
        "",
        tests=(FANOUT_TESTS,),
        databases=POSTGRESQL,
    ),
    Mutation(
        "fan-out: its last fill waits its turn",
        "shared/engine/fanout.py",
        "    else:\n        dispatch.fill()\n",
        "    else:\n        dispatch.fill(wait=False)\n",
        tests=(FANOUT_TESTS,),
        databases=POSTGRESQL,
    ),
    Mutation(
        "dispatch: a fill that does not wait takes nothing while another runs",
        "shared/engine/locks.py",
        "    elif not connection.execute(select(func.pg_try_advisory_xact_lock(DISPATCH_LOCK))).scalar():\n"
        "        return False\n",
        "",
        tests=("tests/engine/test_dispatch.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "cancel: job lock",
        "shared/engine/cancel.py",
        "    lock_job(session, job_id)\n",
        "",
        databases=POSTGRESQL,
    ),
    # Retry on demand: only failed executions move back to pending (a succeeded one named
    # with them would be run again and counted twice), and only a finished job's.
    Mutation(
        "retry: only failed executions move",
        "shared/engine/retry.py",
        "            Execution.status == FAILED,  # each failed execution is retried once\n",
        "",
        tests=(RETRY,),
    ),
    Mutation(
        "retry: only a finished job",
        "shared/engine/retry.py",
        "    if job.status not in RETRYABLE_JOB_STATUSES:\n",
        "    if False:\n",
        tests=(RETRY,),
    ),
    Mutation(
        "SQLite: transactions take the write lock at their start",
        "shared/sqlite.py",
        '            connection.exec_driver_sql("BEGIN IMMEDIATE")\n',
        '            connection.exec_driver_sql("BEGIN")\n',
        tests=("tests/unit/test_sqlite_transactions.py", "tests/engine"),
        databases=SQLITE,
    ),
    Mutation(
        "SQLite: what only reads takes a snapshot, without the write lock",
        "shared/sqlite.py",
        "        if _READS_ONLY.get():\n",
        "        if False:\n",
        tests=("tests/unit/test_sqlite_transactions.py",),
        databases=SQLITE,
    ),
    Mutation(
        "SQLite: one process's transactions queue on a lock, not in SQLite's busy wait",
        "shared/sqlite.py",
        "        lock.acquire(dbapi_connection)\n",
        "",
        tests=("tests/unit/test_sqlite_transactions.py",),
        databases=SQLITE,
    ),
    Mutation(
        "counters: event only on the move that ends the job",
        "shared/engine/counters.py",
        "    if status in TERMINAL_JOB_STATUSES and ended:",
        "    if status in TERMINAL_JOB_STATUSES:",
    ),
    Mutation(
        "sweep: only dead or expired leases",
        "shared/engine/recovery.py",
        "            Execution.lease_token.is_not(None),\n            lost,\n",
        "            Execution.lease_token.is_not(None),\n",
    ),
    Mutation(
        "sweep: exhausted fail instead of release",
        "shared/engine/recovery.py",
        "    released = [r.id for r in rows if r.attempts < r.max_attempts]",
        "    released = [r.id for r in rows]",
    ),
    Mutation(
        "sweep: unclaimed only when the queue is empty",
        "shared/engine/recovery.py",
        "    lost = or_(overdue_retry, never_claimed) if include_unclaimed else overdue_retry",
        "    lost = or_(overdue_retry, never_claimed)",
    ),
    Mutation(
        "sweep: lost-retry grace",
        "shared/engine/recovery.py",
        "        Execution.next_attempt_at < now - timedelta(seconds=settings.lost_retry_grace_seconds),",
        "        Execution.next_attempt_at <= now,",
    ),
    Mutation(
        "sweep: a dead worker's prefetched messages presumed lost",
        "shared/engine/recovery.py",
        "    if published_before is not None:\n",
        "    if False:\n",
    ),
    Mutation(
        "sweep: not a canceled job's fan-out",
        "shared/engine/recovery.py",
        "                Job.canceled_at.is_(None),\n                due,",
        "                due,",
    ),
    Mutation(
        "sweep: a fan-out whose process stopped beating is taken over",
        "shared/engine/recovery.py",
        "or_(never_published, owner_gone, stalled)",
        "or_(never_published, stalled)",
    ),
    Mutation(
        "sweep: a fan-out whose process beats is left to it",
        "shared/engine/recovery.py",
        "    owner_gone = and_(Job.fan_out_owner.is_not(None), ~owner_alive)",
        "    owner_gone = Job.fan_out_owner.is_not(None)",
    ),
    Mutation(
        "sweep: everything unclaimed again when the broker lost its data",
        "shared/engine/recovery.py",
        "    if all_unclaimed:\n        lost = true()",
        "    if False:\n        lost = true()",
    ),
    Mutation(
        "dispatch: bounded by the target",
        "shared/engine/dispatch.py",
        "    room = target(connection, now) - queued(connection, now)",
        "    room = 10**9",
    ),
    Mutation(
        "dispatch: organisation to the back",
        "shared/engine/dispatch.py",
        "            rotation.append(organisation)  # and the organisation to the back of all",
        "            rotation.appendleft(organisation)",
    ),
    Mutation(
        "dispatch: claimed executions leave the broker's bound (the worker's capacity holds them)",
        "shared/engine/dispatch.py",
        "            EXECUTIONS.c.lease_token.is_(None),\n",
        "",
        tests=(DISPATCH,),
    ),
    Mutation(
        "capacity: a group waits for room before it claims",
        "worker/runtime/capacity.py",
        "            while not self._closed and self._in_flight + count > self.limit:\n",
        "            while False:\n",
        tests=(CAPACITY,),
    ),
    Mutation(
        "capacity: a place given back twice is refused",
        "worker/runtime/capacity.py",
        "            if count > self._in_flight:",
        "            if False:",
        tests=(CAPACITY,),
    ),
    Mutation(
        "capacity: an execution reported twice gives its place back once",
        "worker/runtime/groups.py",
        "        if claim.execution_id in reported_ids:  # an executor reporting twice: first one wins\n"
        "            return\n",
        "",
        tests=(CAPACITY,),
    ),
    Mutation(
        "capacity: the places of what was not claimed are given back",
        "worker/runtime/groups.py",
        "    runtime.capacity.release(reserved - min(reserved, len(claims)))\n",
        "",
        tests=(CAPACITY,),
    ),
    Mutation(
        "shutdown: what still runs is handed back with its attempt",
        "shared/engine/workers.py",
        "            attempts=attempt_given_back(connection),\n",
        "",
        tests=(CAPACITY,),
    ),
    Mutation(
        "shutdown: a claimer waiting for room gives its group back to dispatch",
        "worker/runtime/groups.py",
        "        hand_back_to_dispatch(list(execution_ids))\n",
        "",
        tests=(CAPACITY,),
    ),
    Mutation(
        "kb plan: rows the watermark covers are left out",
        "shared/kb/reading.py",
        "        if watermark is not None and watermark.covers(row[0], key_text(row[1:])):\n            continue\n",
        "",
        tests=("tests/kb",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "kb plan: the boundary value is read again",
        "shared/kb/reading.py",
        "        shape.filter_column >= watermark.value\n",
        "        shape.filter_column > watermark.value\n",
        tests=("tests/kb",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "kb read: SQLite times bound as they are stored",
        "shared/kb/reading.py",
        '        event.listen(metadata, "column_reflect", _sqlite_times_as_stored)\n',
        "        pass\n",
        tests=("tests/kb",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "kb watermark: only over batches committed in order",
        "shared/kb/runs.py",
        "    while str(moved + 1) in done:\n        moved += 1\n",
        "    moved = max(int(k) for k in done)\n",
        tests=("tests/kb",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "kb batch: a batch written again is counted once",
        "shared/kb/runs.py",
        "    if str(n) in done:\n",
        "    if False:\n",
        tests=("tests/kb",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "periodic: a claim takes a slot only while it is due",
        "shared/engine/periodic.py",
        "        .where(PeriodicSchedule.id == schedule_id, PeriodicSchedule.next_slot_at <= now)\n",
        "        .where(PeriodicSchedule.id == schedule_id)\n",
        tests=(PERIODIC,),
    ),
    Mutation(
        "periodic: a slot that has run never runs again",
        "shared/engine/periodic.py",
        "    if row.last_slot_at is not None and slot <= row.last_slot_at:\n",
        "    if False:\n",
        tests=(PERIODIC, "tests/kb/test_sync_runs.py"),
    ),
    Mutation(
        "periodic: a slot another tick holds is passed by (SKIP LOCKED)",
        "shared/engine/periodic.py",
        "        .with_for_update(skip_locked=True)\n    ).one_or_none()\n",
        "    ).one_or_none()\n",
        tests=(PERIODIC, "tests/kb/test_sync_runs.py"),
        databases=POSTGRESQL,
    ),
    Mutation(
        "periodic: the next slot is after now",
        "shared/engine/periodic.py",
        "    if following is not None and following <= now:\n",
        "    if False:\n",
        tests=(PERIODIC,),
    ),
    Mutation(
        "mentionlab slots: only a scheduled project's slot runs",
        "shared/mentionlab/schedules.py",
        "    if project is None or not is_scheduled(project):\n        return []\n",
        "    if project is None:\n        return []\n",
        tests=("tests/unit/test_schedules.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "kb slots: one run at a time",
        "shared/kb/scheduled_runs.py",
        "    if current_run(session, job.id) is not None:\n",
        "    if False:\n",
        tests=("tests/kb",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "kb create: active jobs per account",
        "shared/kb/sync.py",
        "    if active_jobs(session, organisation_id) >= limit:\n",
        "    if False:\n",
        tests=("tests/api/test_smartdb_jobs.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "quotas: the organisation's lock around check and create",
        "shared/engine/quotas.py",
        "    lock_organisation(connection, organisation_id)\n",
        "",
        tests=("tests/api/test_quotas.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "quotas: active executions per organisation",
        "shared/engine/quotas.py",
        "    if active.executions + executions > settings.max_active_executions_per_organisation:",
        "    if False:",
        tests=("tests/api/test_quotas.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "quotas: active jobs per organisation",
        "shared/engine/quotas.py",
        "    if active.jobs + jobs > settings.max_active_jobs_per_organisation:",
        "    if False:",
        tests=("tests/api/test_quotas.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "quotas: executions per request",
        "shared/engine/quotas.py",
        "    if executions > settings.max_executions_per_request:",
        "    if False:",
        tests=("tests/api/test_quotas.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "quotas: a cached-jobs trigger admitted as a whole",
        "shared/mentionlab/cached_jobs.py",
        "    if not skip_refused and cached_jobs:",
        "    if False:",
        tests=("tests/api/test_quotas.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "idempotency: a different request under the key",
        "shared/idempotency/__init__.py",
        "    if row.fingerprint != fingerprint:",
        "    if False:",
        tests=("tests/api/test_idempotency.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "idempotency: only expired keys are freed",
        "shared/idempotency/__init__.py",
        "            IdempotencyKey.created_at < _expiry(utcnow()),\n",
        "",
        tests=("tests/api/test_idempotency.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "idempotency: an answer stored under a taken key is refused",
        "shared/idempotency/__init__.py",
        "    if stored is None:\n",
        "    if False:\n",
        tests=("tests/api/test_idempotency.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "webhooks: no signer without a secret",
        "shared/webhooks/sender.py",
        '            raise ValueError("a callback is never sent unsigned: no signing secret")\n',
        "            pass\n",
        tests=(WEBHOOK_CLAIM,),
    ),
    Mutation(
        "webhooks: an organisation without a secret gets one before sending",
        "shared/webhooks/secrets.py",
        "        ensure_current(session, lacking)\n",
        "",
        tests=(WEBHOOK_CLAIM,),
    ),
    Mutation(
        "webhooks: an organisation is made with its secret",
        "shared/accounts/organisations.py",
        "    ensure_current(session, [org.id])\n",
        "",
        tests=("tests/api/test_superai_webhooks.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "webhooks: rotations take turns",
        "shared/webhooks/secrets.py",
        "        .with_for_update()\n",
        "",
        tests=("tests/api/test_superai_webhooks.py",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "webhooks: a message follows the last one about its execution",
        "shared/webhooks/messages.py",
        "follows_id=tails.get(new.execution_id) if new.execution_id else None,",
        "follows_id=None,",
        tests=(WEBHOOK_CLAIM,),
    ),
    Mutation(
        "webhooks: not due before the message it follows is settled",
        "shared/webhooks/messages.py",
        "        ~unsettled_predecessor,\n",
        "",
        tests=(WEBHOOK_CLAIM,),
    ),
    Mutation(
        "webhooks: a chain never forks",
        "shared/migrations/versions/20261203_a4b5c6d7e8f9_callbacks_in_order.py",
        '["follows_id"], unique=True',
        '["follows_id"]',
        tests=(WEBHOOK_CLAIM,),
        databases=POSTGRESQL,
    ),
    Mutation(
        "webhooks: a closing message waits for the execution messages being tried",
        "shared/webhooks/messages.py",
        "and_(~unsettled_execution_message, ~unwritten_execution_message)",
        "~unwritten_execution_message",
        tests=(WEBHOOK_CLAIM,),
    ),
    Mutation(
        "webhooks: a closing message waits for the execution messages not written yet",
        "shared/webhooks/messages.py",
        "and_(~unsettled_execution_message, ~unwritten_execution_message)",
        "~unsettled_execution_message",
        tests=(WEBHOOK_CLAIM,),
    ),
    Mutation(
        "cancel: a deadlock with a worker is tried again, not failed",
        "shared/engine/cancel.py",
        "            if attempt == DEADLOCK_RETRIES or not _deadlocked(error):\n",
        "            if True:\n",
        tests=(CANCEL_DEADLOCK,),
        databases=POSTGRESQL,
    ),
    Mutation(
        "preparation: only the first result counts (the prepared keys)",
        "shared/engine/jobs.py",
        " or prepared.keys() & job.payload.keys():",
        ":",
        tests=(PREPARATION,),
    ),
    Mutation(
        "webhook sender: takes go round the organisations and receivers",
        "shared/webhooks/sender.py",
        "    groups = turns.order([(o, r) for o, r in waiting])\n",
        "    groups = [(o, r) for o, r in waiting]\n",
        tests=(WEBHOOK_CLAIM,),
    ),
    Mutation(
        "webhook sender: no more than its share of a receiver's messages taken",
        "shared/webhooks/sender.py",
        "        free = share - in_flight.get(receiver, 0) - taken_per_receiver[receiver]\n",
        "        free = room\n",
        tests=(
            f"{SENDER_FAIRNESS}::test_a_hanging_receiver_holds_up_no_other_tenant_and_only_its_bound_of_requests",
        ),
        databases=POSTGRESQL,
    ),
    Mutation(
        "webhook sender: a message another sender holds is skipped, not leased twice",
        "shared/webhooks/sender.py",
        "        .with_for_update(skip_locked=True)\n",
        "",
        tests=(f"{SENDER_FAIRNESS}::test_two_senders_at_once_send_each_message_once",),
        databases=POSTGRESQL,
    ),
    Mutation(
        "webhook sender: an open breaker holds its receiver's messages back",
        "shared/webhooks/sender.py",
        "    held_back = open_now | {r for r, n in in_flight.items() if n >= share}\n",
        "    held_back = {r for r, n in in_flight.items() if n >= share}\n",
        tests=(
            f"{SENDER_FAIRNESS}::test_a_failing_receiver_is_backed_off_whole_until_a_probe_gets_an_answer",
        ),
        databases=POSTGRESQL,
    ),
    # One unit of work per request (api/transaction.py): an error answer, or an
    # exception, rolls back what the view wrote.
    Mutation(
        "request transaction: an error answer rolls back",
        "api/transaction.py",
        "        _end(None if response.status_code < 400 else _Refused(response.status_code))\n",
        "        _end(None)\n",
        tests=(REQUEST_TRANSACTIONS,),
        databases=POSTGRESQL,
    ),
    Mutation(
        "request transaction: an exception rolls back",
        "api/transaction.py",
        "            _end(exc)\n",
        "            _end(None)\n",
        tests=(REQUEST_TRANSACTIONS,),
        databases=POSTGRESQL,
    ),
    # Idempotency-Key: the key's answer is stored in the create's transaction. Stored in
    # one of its own after the create committed (as before), a process killed in between
    # leaves a job without its key, and the retry makes a second one.
    Mutation(
        "idempotency: the answer stored in the create's transaction",
        "api/idempotency.py",
        '    failpoints.reached("idempotency.before_store")\n',
        '    __import__("api.transaction").transaction._end(None)  # the create commits alone\n'
        "    session = request_session()  # and the answer is stored in a transaction of its own\n"
        '    failpoints.reached("idempotency.before_store")\n',
        tests=(IDEMPOTENCY_CRASH,),
    ),
    # ... and a second request with the key answers 409 at once while the first runs
    # (PostgreSQL's advisory lock; SQLite's writer lock makes it wait its turn).
    Mutation(
        "idempotency: the key's advisory lock",
        "shared/idempotency/__init__.py",
        "    if not lock_key(session, organisation_id, key):\n        return InProgress()\n",
        "",
        tests=(
            f"{IDEMPOTENCY}::test_a_key_in_progress_answers_409_at_once_and_is_free_again_if_its_request_dies",
        ),
        databases=POSTGRESQL,
    ),
    # The dashboard: a form post without the session's CSRF token changes nothing.
    Mutation(
        "dashboard: form posts without a CSRF token",
        "api/ui/views.py",
        '    if request.method == "POST":\n        csrf.protect()\n',
        "",
        tests=(f"{DASHBOARD}::test_a_post_without_the_csrf_token_is_refused_and_changes_nothing",),
        databases=POSTGRESQL,
    ),
    # The dashboard reads a job through the organisation's scope: another's is a 404.
    Mutation(
        "dashboard: a job page without the tenant check",
        "api/ui/views.py",
        "    return engine_jobs.get_job(request_session(), organisation_id(), job_id)\n",
        "    return request_session().get(Job, job_id)  # type: ignore[return-value]\n",
        tests=(f"{DASHBOARD}::test_another_organisations_jobs_are_not_there",),
        databases=POSTGRESQL,
    ),
    # The dashboard's session names an API key: a revoked one logs out at the next click.
    Mutation(
        "dashboard: a revoked key's session goes on",
        "api/ui/login.py",
        "key is None or key.revoked_at is not None or ",
        "key is None or ",
        tests=(f"{DASHBOARD}::test_a_revoked_key_ends_the_session_at_the_next_click",),
        databases=POSTGRESQL,
    ),
    # Flower names jobs: a group message shows its job (kwargsrepr), so a search by the job
    # id finds its group tasks ...
    Mutation(
        "flower: a group message carries its job's label",
        "shared/messaging/publisher.py",
        "([[str(i) for i in group]], None, kwargsrepr_of(group))",
        "([[str(i) for i in group]], None, None)",
        tests=(FLOWER,),
        databases=POSTGRESQL,
    ),
    # ... and a group task's end waits for its executions: with Celery's own
    # task-succeeded sent at the ack, a later task-failed cannot make the task FAILURE.
    Mutation(
        "flower: a group task's own task-succeeded held back",
        "worker/runtime/group_events.py",
        '            if deferred and type == "task-succeeded":\n'
        "                return  # the completer sends this task's end\n",
        "",
        tests=(FLOWER,),
        databases=POSTGRESQL,
    ),
    Mutation(
        "flower: a group with a failed execution ends task-failed",
        "worker/runtime/group_events.py",
        '        if ends.get("failed"):\n',
        "        if False:\n",
        tests=(FLOWER,),
        databases=POSTGRESQL,
    ),
    # Traces: one trace from the request to each provider call (shared/tracing.py). The
    # carries are the same on both databases; one is enough.
    # Dispatch publishes each group under its job's stored context, not the current one
    # (a refill runs outside any task of the job, or inside another job's).
    Mutation(
        "traces: each group is published under its job's stored context",
        "shared/engine/dispatch.py",
        "    unpublished = publisher.publish_groups(groups, trace_parents=parents)\n",
        "    unpublished = publisher.publish_groups(groups)\n",
        tests=(TRACES,),
        databases=POSTGRESQL,
    ),
    # ... the fan-out's context becomes the job's: its groups are its children ...
    Mutation(
        "traces: the fan-out's context becomes the job's",
        "shared/engine/fanout.py",
        "        traceparent = tracing.current_traceparent() if plan.should_run else None\n",
        "        traceparent = None\n",
        tests=(TRACES,),
        databases=POSTGRESQL,
    ),
    # ... and the task's context goes onto the event loop with its group's calls.
    Mutation(
        "traces: the group's task context is carried onto the event loop",
        "worker/runtime/groups.py",
        "    trace_context = tracing.current_context()\n",
        "    trace_context = None\n",
        tests=(TRACES,),
        databases=POSTGRESQL,
    ),
    # The Celery instrumentation's publish hooks stay off: for a task name its process
    # does not register they leave their span open and its context attached.
    Mutation(
        "traces: the Celery instrumentation's publish hooks are disconnected",
        "shared/tracing.py",
        "    _disconnect_publish_hooks(celery)\n",
        "",
        tests=(TRACING_SETUP,),
        databases=POSTGRESQL,
    ),
]


def main(first: int) -> int:
    caught_all = True
    for mutation in MUTATIONS[first:]:
        file = ROOT / mutation.path
        original = file.read_text()
        assert original.count(mutation.old) == 1, (mutation.name, original.count(mutation.old))
        file.write_text(original.replace(mutation.old, mutation.new))
        try:
            for database in mutation.databases:
                caught, line = run_tests(mutation, database)
                caught_all &= caught
                verdict = "CAUGHT " if caught else "MISSED "
                print(f"{verdict}{mutation.name} [{database}] :: {line}", flush=True)
        finally:
            file.write_text(original)
    return 0 if caught_all else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
