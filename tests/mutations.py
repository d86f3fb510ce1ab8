"""Remove each guard of the engine in turn: the engine tests must fail every time.

    make mutations            # or: .venv/bin/python -m tests.mutations [first-index]

Each mutation deletes or weakens one guard (a WHERE condition, a lock, a bound) in the
source, runs ``tests/engine`` (or the tests it names), and restores the file. A mutation the tests do not catch is
a guard no test protects. Exit status 1 if any survives.
"""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MUTATIONS = [
    (
        "claim: status guard",
        "shared/engine/claim.py",
        "            EXECUTIONS.c.status.in_(ACTIVE_EXECUTION_STATUSES),\n",
        "",
    ),
    (
        "claim: lease guard",
        "shared/engine/claim.py",
        "            or_(EXECUTIONS.c.lease_expires_at.is_(None), EXECUTIONS.c.lease_expires_at < now),\n",
        "",
    ),
    (
        "claim: retry-time guard",
        "shared/engine/claim.py",
        "            or_(EXECUTIONS.c.next_attempt_at.is_(None), EXECUTIONS.c.next_attempt_at <= now),\n",
        "",
    ),
    (
        "claim: attempts < max_attempts",
        "shared/engine/claim.py",
        "            EXECUTIONS.c.attempts < max_attempts,\n",
        "",
    ),
    (
        "finish: lease token guard",
        "shared/engine/finish.py",
        "WHERE e.id = v.id AND e.lease_token = v.token AND e.status = v.claimed_status",
        "WHERE e.id = v.id AND e.status = v.claimed_status",
    ),
    (
        "finish: claimed-status guard",
        "shared/engine/finish.py",
        "WHERE e.id = v.id AND e.lease_token = v.token AND e.status = v.claimed_status",
        "WHERE e.id = v.id AND e.lease_token = v.token",
    ),
    (
        "finish: retry only below max_attempts",
        "shared/engine/finish.py",
        "    if outcome.retryable and claim.attempt < claim.max_attempts:",
        "    if outcome.retryable:",
    ),
    (
        "fan-out: ON CONFLICT DO NOTHING",
        "shared/engine/fanout.py",
        "    ON CONFLICT (id) DO NOTHING\n",
        "",
    ),
    (
        "fan-out: stop at a cancel",
        "shared/engine/fanout.py",
        "    if canceled is not None:\n        return None\n",
        "",
    ),
    (
        "fan-out: job lock in the chunk",
        "shared/engine/fanout.py",
        "    lock_job(connection, job_id)\n    canceled",
        "    canceled",
    ),
    ("cancel: job lock", "shared/engine/cancel.py", "    lock_job(session, job_id)\n", ""),
    (
        "counters: event only on the move that ends the job",
        "shared/engine/counters.py",
        "    if status in TERMINAL_JOB_STATUSES and ended:",
        "    if status in TERMINAL_JOB_STATUSES:",
    ),
    (
        "sweep: only dead or expired leases",
        "shared/engine/recovery.py",
        "            Execution.lease_token.is_not(None),\n            lost,\n",
        "            Execution.lease_token.is_not(None),\n",
    ),
    (
        "sweep: exhausted fail instead of release",
        "shared/engine/recovery.py",
        "    released = [r.id for r in rows if r.attempts < r.max_attempts]",
        "    released = [r.id for r in rows]",
    ),
    (
        "sweep: unclaimed only when the queue is empty",
        "shared/engine/recovery.py",
        "    lost = or_(overdue_retry, never_claimed) if include_unclaimed else overdue_retry",
        "    lost = or_(overdue_retry, never_claimed)",
    ),
    (
        "sweep: lost-retry grace",
        "shared/engine/recovery.py",
        "        Execution.next_attempt_at < now - timedelta(seconds=settings.lost_retry_grace_seconds),",
        "        Execution.next_attempt_at <= now,",
    ),
    (
        "sweep: a dead worker's prefetched messages presumed lost",
        "shared/engine/recovery.py",
        "    if published_before is not None:\n",
        "    if False:\n",
    ),
    (
        "sweep: not a canceled job's fan-out",
        "shared/engine/recovery.py",
        "                Job.canceled_at.is_(None),\n                or_(never_published, stalled),",
        "                or_(never_published, stalled),",
    ),
    (
        "dispatch: bounded by the target",
        "shared/engine/dispatch.py",
        "    room = target(connection, now) - outstanding(connection, now)",
        "    room = 10**9",
    ),
    (
        "dispatch: organisation to the back",
        "shared/engine/dispatch.py",
        "            rotation.append(organisation)  # and the organisation to the back of all",
        "            rotation.appendleft(organisation)",
    ),
    # Knowledge-base sync runs (tests/kb: a real source table, driven in this process).
    (
        "kb plan: rows the watermark covers are left out",
        "shared/kb/reading.py",
        "        if watermark is not None and watermark.covers(row[0], key_text(row[1:])):\n            continue\n",
        "",
        "tests/kb",
    ),
    (
        "kb plan: the boundary value is read again",
        "shared/kb/reading.py",
        "        shape.filter_column >= watermark.value\n",
        "        shape.filter_column > watermark.value\n",
        "tests/kb",
    ),
    (
        "kb read: SQLite times bound as they are stored",
        "shared/kb/reading.py",
        '        event.listen(metadata, "column_reflect", _sqlite_times_as_stored)\n',
        "        pass\n",
        "tests/kb",
    ),
    (
        "kb watermark: only over batches committed in order",
        "shared/kb/runs.py",
        "    while str(moved + 1) in done:\n        moved += 1\n",
        "    moved = max(int(k) for k in done)\n",
        "tests/kb",
    ),
    (
        "kb batch: a batch written again is counted once",
        "shared/kb/runs.py",
        "    if str(n) in done:\n",
        "    if False:\n",
        "tests/kb",
    ),
    (
        "kb tick: due jobs taken SKIP LOCKED",
        "shared/kb/sync.py",
        "            .limit(limit)\n            .with_for_update(skip_locked=True)\n",
        "            .limit(limit)\n",
        "tests/kb",
    ),
    (
        "kb tick: one run at a time",
        "shared/kb/sync.py",
        "            if current_run(session, sync.id) is not None:\n                report.slots_skipped",
        "            if False:\n                report.slots_skipped",
        "tests/kb",
    ),
    (
        "kb tick: a slot that has run is skipped",
        "shared/kb/sync.py",
        "            if slot_has_run(session, sync.id, slot):\n",
        "            if False:\n",
        "tests/kb",
    ),
    (
        "kb create: active jobs per account",
        "shared/kb/sync.py",
        "    if active_jobs(session, organisation_id) >= limit:\n",
        "    if False:\n",
        "tests/api/test_smartdb_jobs.py",
    ),
    # Quotas and Idempotency-Key (tests/api: real PostgreSQL, concurrent requests).
    (
        "quotas: the organisation's lock around check and create",
        "shared/engine/quotas.py",
        "    lock_organisation(connection, organisation_id)\n",
        "",
        "tests/api/test_quotas.py",
    ),
    (
        "quotas: active executions per organisation",
        "shared/engine/quotas.py",
        "    if active.executions + executions > settings.max_active_executions_per_organisation:",
        "    if False:",
        "tests/api/test_quotas.py",
    ),
    (
        "quotas: active jobs per organisation",
        "shared/engine/quotas.py",
        "    if active.jobs + jobs > settings.max_active_jobs_per_organisation:",
        "    if False:",
        "tests/api/test_quotas.py",
    ),
    (
        "quotas: executions per request",
        "shared/engine/quotas.py",
        "    if executions > settings.max_executions_per_request:",
        "    if False:",
        "tests/api/test_quotas.py",
    ),
    (
        "quotas: a cached-jobs trigger admitted as a whole",
        "shared/mentionlab/cached_jobs.py",
        "    if not skip_refused and cached_jobs:",
        "    if False:",
        "tests/api/test_quotas.py",
    ),
    (
        "idempotency: a different request under the key",
        "shared/idempotency.py",
        "            if row.fingerprint != fingerprint:",
        "            if False:",
        "tests/api/test_idempotency.py",
    ),
    (
        "idempotency: only expired keys are freed",
        "shared/idempotency.py",
        "                    IdempotencyKey.created_at < _expiry(now),\n",
        "",
        "tests/api/test_idempotency.py",
    ),
    (
        "idempotency: store and release only by the claim's holder",
        "shared/idempotency.py",
        "        IdempotencyKey.locked_at == claimed.locked_at,\n",
        "",
        "tests/api/test_idempotency.py",
    ),
]

results = []
for name, path, old, new, *tests in MUTATIONS[int(sys.argv[1]) if len(sys.argv) > 1 else 0 :]:
    file = ROOT / path
    original = file.read_text()
    assert original.count(old) == 1, (name, original.count(old))
    file.write_text(original.replace(old, new))
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                *(tests or ["tests/engine"]),
                "-p",
                "no:cacheprovider",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        failed = run.returncode != 0
        line = [out for out in run.stdout.splitlines() if out.startswith("FAILED")][:1]
    finally:
        file.write_text(original)
    results.append((name, failed, line[0] if line else run.stdout.strip().splitlines()[-1]))
    print(
        ("CAUGHT " if failed else "MISSED ") + name + " :: " + (line[0] if line else ""), flush=True
    )
sys.exit(0 if all(f for _, f, _ in results) else 1)
