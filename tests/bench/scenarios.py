"""The three measured scenarios: bare Celery, one big trigger at 0 ms, and at 500 ms.

Import this only after ``tests.bench.run`` has set the environment (it reads settings).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import redis

from shared.messaging import publisher
from shared.messaging.queues import EXECUTIONS_QUEUE, NOOP_TASK
from tests.bench.infra import (
    BenchWorker,
    CpuMeter,
    Sampler,
    broker_backlog,
    libpq_url,
)
from tests.support import assert_counters_exact, make_tenant

# Four simulated models (any four of the trigger enum would do: all are simulated).
MODELS = ("gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash", "sonar")
MAX_RUNS = 50
TERMINAL = ("completed", "failed", "partial_failed", "canceled")


@dataclass
class BenchContext:
    """What every scenario needs: where things are and how to start a worker."""

    database_url: str
    redis_url: str
    concurrency: int
    var_dir: Path
    worker_env: Callable[[float], dict[str, str]]  # latency_ms -> env of the worker
    profiler: Callable[[str, int], Any] | None = None  # (scenario, pid) -> context manager
    logs: dict[str, str] = field(default_factory=dict)

    def flush_broker(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()

    def start_worker(self, scenario: str, latency_ms: float, entry: str = "worker") -> BenchWorker:
        """Start one Procfile process (``worker`` runs executions; ``dispatcher`` fan-out)."""
        log_path = self.var_dir / f"bench-{entry}-{scenario}.log"
        self.logs[f"{scenario}-{entry}"] = str(log_path)
        worker = BenchWorker(
            name=scenario,
            entry=entry,
            concurrency=self.concurrency,
            env=self.worker_env(latency_ms),
            log_path=log_path,
        )
        try:
            worker.wait_ready()
        except BaseException:
            worker.stop()
            raise
        return worker


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _profile(ctx: BenchContext, scenario: str, pid: int) -> Any:
    return ctx.profiler(scenario, pid) if ctx.profiler else _NullContext()


# ---------------------------------------------------------------------------------------
# (a) bare Celery: bench.noop through the same broker, queue and pool.

NOOP_LINE = re.compile(
    rb"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/[^\]]*\] "
    rb"Task " + re.escape(NOOP_TASK.encode()) + rb"\[[^\]]+\] "
    rb"(received|succeeded in ([0-9.e-]+)s)",
    re.MULTILINE,
)


@dataclass
class NoopLog:
    """What the worker's INFO log says about the no-op tasks (wall-clock times)."""

    succeeded: int = 0
    first_received: float | None = None
    last_succeeded: float | None = None
    task_runtime_s: float = 0.0


def parse_noop_log(path: Path) -> NoopLog:
    """Count the no-op successes and find the first receipt and last success."""
    log = NoopLog()
    for match in NOOP_LINE.finditer(path.read_bytes()):
        # Celery logs local time with millisecond resolution.
        stamp = datetime.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if match.group(2) == b"received":
            if log.first_received is None or stamp < log.first_received:
                log.first_received = stamp
        else:
            log.succeeded += 1
            log.task_runtime_s += float(match.group(3))
            if log.last_succeeded is None or stamp > log.last_succeeded:
                log.last_succeeded = stamp
    return log


def publish_noops(n: int) -> tuple[float, float, float]:
    """Publish ``n`` no-ops on one producer; (wall start, perf start, perf end)."""
    app = publisher.producer_app()
    with app.producer_or_acquire() as producer:
        wall0 = time.time()
        t0 = time.perf_counter()
        for seq in range(n):
            app.send_task(NOOP_TASK, args=[seq], producer=producer)
        return wall0, t0, time.perf_counter()


def wait_drained(client: redis.Redis, deadline: float) -> float:
    """Poll every 5 ms until nothing waits in ``executions`` and nothing is unacked.

    Returns the ``perf_counter`` of the first of two consecutive empty observations (the
    second closes the microsecond window between a worker popping a message and
    recording it as unacked).
    """
    seen_empty_at: float | None = None
    while True:
        now = time.perf_counter()
        waiting, unacked = broker_backlog(client, EXECUTIONS_QUEUE)
        if waiting == 0 and unacked == 0:
            if seen_empty_at is not None:
                return seen_empty_at
            seen_empty_at = now
        else:
            seen_empty_at = None
        if now > deadline:
            raise TimeoutError(f"noop: {waiting} waiting and {unacked} unacked at the deadline")
        time.sleep(0.005)


def run_baseline(ctx: BenchContext, n: int, timeout: float) -> dict[str, Any]:
    """Bare Celery: ``n`` no-op tasks through the same broker, queue and pool as executions.

    Method (the headline figure): the clock starts just before the first publish (one
    producer on one pooled connection, like ``publisher.publish_executions``; the worker
    is already consuming) and stops at the first moment the ``executions`` list (every
    priority step) is empty AND the ``unacked`` hash / ``unacked_index`` zset are empty,
    i.e. every message has been delivered, run and acked (``acks_late``: the ack follows
    the task). Redis is polled every 5 ms once publishing is done. Cross-check: after the
    worker stops, its INFO log must show ``n`` successes of ``bench.noop``; the last one's
    timestamp (ms resolution) gives a log-based end time, reported next to it.

    The publisher shares the two cores with the worker, so the headline can be bounded by
    publishing. A second pass separates the two: the queue is filled first with no worker
    running, then a fresh worker drains it, timed from its first logged receipt to the
    queue being empty (``prefilled_tasks_per_s``: the worker's own ceiling).
    """
    ctx.flush_broker()
    worker = ctx.start_worker("a", 0)
    client = redis.Redis.from_url(ctx.redis_url)
    sampler = Sampler(worker.proc.pid, None)
    cpu = CpuMeter(worker.proc.pid)
    try:
        sampler.start()
        cpu.begin()
        with _profile(ctx, "a", worker.proc.pid):
            wall0, t0, t_published = publish_noops(n)
            drained_at = wait_drained(client, t0 + timeout)
        cpu_seconds = cpu.end()
    finally:
        sampler.stop()
        worker.stop()
    elapsed = drained_at - t0
    log = parse_noop_log(worker.log_path)
    if log.succeeded != n:
        raise AssertionError(f"noop: the worker logged {log.succeeded} successes, not {n}")
    log_elapsed = (log.last_succeeded - wall0) if log.last_succeeded is not None else None

    # Second pass: a pre-filled queue, drained by a fresh worker.
    try:
        ctx.flush_broker()
        publish_noops(n)
        prefilled = ctx.start_worker("a-prefilled", 0)
        try:
            drained_perf = wait_drained(client, time.perf_counter() + timeout)
            drained_wall = time.time() - (time.perf_counter() - drained_perf)
        finally:
            prefilled.stop()
    finally:
        client.close()
    prefilled_log = parse_noop_log(prefilled.log_path)
    if prefilled_log.succeeded != n or prefilled_log.first_received is None:
        raise AssertionError(f"noop (pre-filled): {prefilled_log.succeeded} successes, not {n}")
    prefilled_s = drained_wall - prefilled_log.first_received
    return {
        "messages": n,
        "method": "first publish -> executions queue empty and nothing unacked (Redis, 5 ms)",
        "elapsed_s": round(elapsed, 3),
        "tasks_per_s": round(n / elapsed, 1),
        "publish_s": round(t_published - t0, 3),
        "publish_per_s": round(n / (t_published - t0), 1),
        "log_elapsed_s": round(log_elapsed, 3) if log_elapsed is not None else None,
        "log_tasks_per_s": round(n / log_elapsed, 1) if log_elapsed else None,
        "task_runtime_total_s": round(log.task_runtime_s, 3),
        "prefilled_elapsed_s": round(prefilled_s, 3),
        "prefilled_tasks_per_s": round(n / prefilled_s, 1),
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "cpu_seconds": cpu_seconds,
        "sampler_error": sampler.error,
    }


# ---------------------------------------------------------------------------------------
# (b) and (c): one trigger through the API, executions through fan-out and the pool.


def plan_job(n: int) -> tuple[int, int, int]:
    """(queries, models, runs) with queries x models x runs == n: 4 models, <= 50 runs."""
    models = next(m for m in (4, 3, 2, 1) if n % m == 0)
    rest = n // models
    runs = next(r for r in range(min(MAX_RUNS, rest), 0, -1) if rest % r == 0)
    return rest // runs, models, runs


def _job_row(conn: psycopg.Connection[Any], job_id: str) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT status, pending, retrying, success, failed FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None, job_id
    return tuple(row)


STAGES_SQL = """
SELECT
  extract(epoch FROM j.created_at), extract(epoch FROM j.started_at),
  extract(epoch FROM j.fanned_out_at), extract(epoch FROM j.finished_at),
  extract(epoch FROM min(e.started_at)), extract(epoch FROM min(e.finished_at)),
  extract(epoch FROM max(e.finished_at)),
  avg(extract(epoch FROM e.finished_at - e.started_at)),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.started_at)),
  percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.started_at)),
  avg(extract(epoch FROM e.started_at - e.created_at)),
  percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.started_at - e.created_at)),
  max(e.attempts),
  count(*) FILTER (WHERE e.finished_at <= j.fanned_out_at)
FROM jobs j JOIN executions e ON e.job_id = j.id
WHERE j.id = %s
GROUP BY j.id
"""

PEAK_SECOND_SQL = """
SELECT count(*) FROM executions WHERE job_id = %s AND finished_at IS NOT NULL
GROUP BY date_trunc('second', finished_at) ORDER BY 1 DESC LIMIT 1
"""


def stage_timings(conn: psycopg.Connection[Any], job_id: str, wall0: float) -> dict[str, Any]:
    """Where the time went, from the rows' own timestamps (seconds after the trigger)."""
    row = conn.execute(STAGES_SQL, (job_id,)).fetchone()
    assert row is not None
    values = [float(v) if v is not None else None for v in row]
    (created, started, fanned, finished, first_claim, first_done, last_done) = values[:7]
    in_task_avg, in_task_p50, in_task_p95, wait_avg, wait_p95, max_attempts, done_in_fanout = (
        values[7:]
    )

    def rel(t: float | None) -> float | None:
        return round(t - wall0, 3) if t is not None else None

    peak = conn.execute(PEAK_SECOND_SQL, (job_id,)).fetchone()
    fanout_s = (fanned - started) if fanned is not None and started is not None else None
    after_s = (finished - fanned) if finished is not None and fanned is not None else None
    return {
        "job_accepted_s": rel(created),
        "fanout_first_chunk_committed_s": rel(started),
        "first_execution_claimed_s": rel(first_claim),
        "first_execution_finished_s": rel(first_done),
        "fanout_finished_s": rel(fanned),
        "last_execution_finished_s": rel(last_done),
        "job_finished_s": rel(finished),
        "fanout_duration_s": round(fanout_s, 3) if fanout_s is not None else None,
        "finished_during_fanout": int(done_in_fanout or 0),
        "rate_during_fanout_per_s": (
            round((done_in_fanout or 0) / fanout_s, 1) if fanout_s else None
        ),
        "rate_after_fanout_per_s": None,
        "after_fanout_s": round(after_s, 3) if after_s is not None else None,
        "in_task_avg_ms": _ms(in_task_avg),
        "in_task_p50_ms": _ms(in_task_p50),
        "in_task_p95_ms": _ms(in_task_p95),
        "queue_wait_avg_s": round(wait_avg, 3) if wait_avg is not None else None,
        "queue_wait_p95_s": round(wait_p95, 3) if wait_p95 is not None else None,
        "max_attempts_used": int(max_attempts or 0),
        "peak_executions_in_one_second": int(peak[0]) if peak else 0,
    }


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 1) if seconds is not None else None


def run_trigger(
    ctx: BenchContext, scenario: str, n: int, latency_ms: float, timeout: float
) -> dict[str, Any]:
    """One trigger of ``n`` executions at ``latency_ms``; time it until the job is terminal.

    The trigger goes through the real Flask app (``api.create_app()``'s test client, in
    this process): authentication, validation, the job row, the fan-out publish. The clock
    starts just before the request and stops when a poll (every 0.1 s) of the job row sees
    a terminal status; the job's own ``finished_at`` gives the exact end, reported too.
    """
    from api import create_app  # the API after the environment is set

    queries, models, runs = plan_job(n)
    tenant = make_tenant(n_queries=queries, name=f"Bench{scenario.upper()}")
    client = create_app().test_client()
    ctx.flush_broker()
    dispatcher = ctx.start_worker(scenario, latency_ms, "dispatcher")
    worker = ctx.start_worker(scenario, latency_ms)
    sampler = Sampler(worker.proc.pid, ctx.database_url)
    cpu = CpuMeter(worker.proc.pid)
    conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
    try:
        sampler.start()
        cpu.begin()
        with _profile(ctx, scenario, worker.proc.pid):
            wall0 = time.time()
            t0 = time.perf_counter()
            response = client.post(
                "/api/jobs/trigger",
                headers=tenant.headers(),
                json={"aiModels": list(MODELS[:models]), "executionCount": runs},
            )
            trigger_ms = (time.perf_counter() - t0) * 1000
            body = response.get_json()
            if response.status_code != 201:
                raise AssertionError(f"trigger answered {response.status_code}: {body}")
            job_id: str = body["id"]
            if body["totalExecutions"] != n:
                raise AssertionError(f"the job has {body['totalExecutions']} executions, not {n}")
            deadline = t0 + timeout
            while True:
                status, pending, retrying, success, failed = _job_row(conn, job_id)
                if status in TERMINAL:
                    break
                if time.perf_counter() > deadline:
                    raise TimeoutError(
                        f"job {job_id} is {status} after {timeout}s: pending={pending} "
                        f"retrying={retrying} success={success} failed={failed}"
                    )
                time.sleep(0.1)
            elapsed = time.perf_counter() - t0
        cpu_seconds = cpu.end()
    finally:
        sampler.stop()
        worker.stop()
        dispatcher.stop()
    try:
        job = assert_counters_exact(uuid.UUID(job_id))
        if (job.status, job.success, job.failed) != ("completed", n, 0):
            raise AssertionError(
                f"job {job_id}: status={job.status} success={job.success} failed={job.failed}"
            )
        stages = stage_timings(conn, job_id, wall0)
    finally:
        conn.close()
    exact_s = stages["job_finished_s"]
    if stages["after_fanout_s"] and stages["fanout_duration_s"] is not None:
        stages["rate_after_fanout_per_s"] = round(
            (n - stages["finished_during_fanout"]) / stages["after_fanout_s"], 1
        )
    bound = ctx.concurrency / (latency_ms / 1000) if latency_ms else None
    return {
        "executions": n,
        "shape": {"queries": queries, "models": models, "runs": runs},
        "simulated_latency_ms": latency_ms,
        "job_id": job_id,
        "status": job.status,
        "success": job.success,
        "failed": job.failed,
        "counters_exact": True,
        "trigger_latency_ms": round(trigger_ms, 1),
        "elapsed_s": round(elapsed, 3),
        "executions_per_s": round(n / elapsed, 1),
        "exact_elapsed_s": exact_s,
        "exact_executions_per_s": round(n / exact_s, 1) if exact_s else None,
        "theoretical_bound_per_s": round(bound, 1) if bound else None,
        "share_of_bound": round(n / elapsed / bound, 3) if bound else None,
        "peak_in_flight": sampler.peak_in_flight,
        "mean_in_flight": sampler.mean(sampler.in_flight_total),
        "peak_lock_waiters": sampler.peak_lock_waiters,
        "mean_lock_waiters": sampler.mean(sampler.lock_waiters_total),
        "samples": sampler.samples,
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "cpu_seconds": cpu_seconds,
        "stages": stages,
        "sampler_error": sampler.error,
    }
