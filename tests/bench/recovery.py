"""(r) recovery times with the default recovery settings (heartbeat 5 s, dead after 20 s,
sweep every 10 s), the Procfile's processes, PostgreSQL:

- ``redis``: a 20,000-execution job at 20 ms; Redis without persistence killed -9 at a
  third of it and started again, empty, a second later. How long after Redis is back
  the work resumes and the job ends, against the same job without the fault.
- ``dispatcher``: a 100,000-execution job at 0 ms; the dispatcher killed -9 in the middle
  of its fan-out and started again a second later. How long after the restart the
  fan-out goes on and the job ends, against the same job without the fault.

Counters are checked exact after each run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from shared.settings import reset_settings_cache
from tests.bench.infra import libpq_url
from tests.bench.scenarios import BenchContext, check_and_stages, running, trigger, wait_terminal
from tests.support import RedisServer

REDIS_JOB = 20_000
REDIS_LATENCY_MS = 20.0
DISPATCHER_JOB = 100_000


def _count(conn: psycopg.Connection[Any], sql: str, job_id: str) -> int:
    row = conn.execute(sql, (job_id,)).fetchone()
    return int(row[0]) if row else 0


def _success(conn: psycopg.Connection[Any], job_id: str) -> int:
    return _count(conn, "SELECT success FROM jobs WHERE id = %s", job_id)


def _written(conn: psycopg.Connection[Any], job_id: str) -> int:
    return _count(conn, "SELECT count(*) FROM executions WHERE job_id = %s", job_id)


def _wait(predicate: Any, timeout: float, what: str) -> float:
    """perf_counter when ``predicate`` first held (polled every 20 ms)."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.perf_counter()


@contextmanager
def _own_redis(ctx: BenchContext) -> Iterator[RedisServer]:
    """A Redis without persistence of the scenario's own, for this process and workers."""
    server = RedisServer(ctx.var_dir)
    server.start()
    previous = os.environ["REDIS_URL"]
    os.environ["REDIS_URL"] = server.url
    reset_settings_cache()
    try:
        yield server
    finally:
        server.kill()
        os.environ["REDIS_URL"] = previous
        reset_settings_cache()


def _redis_run(ctx: BenchContext, fault: bool) -> dict[str, Any]:
    from api import create_app

    with _own_redis(ctx) as server:
        client = create_app().test_client()
        env = {"REDIS_URL": server.url}
        names = [("dispatcher", "dispatcher"), ("worker-0", "worker"), ("worker-1", "worker")]
        prefix = "r-redis-fault" if fault else "r-redis-clean"
        workers = [ctx.start(f"{prefix}-{n}", REDIS_LATENCY_MS, e, extra_env=env) for n, e in names]
        beat = ctx.start(f"{prefix}-beat", REDIS_LATENCY_MS, "beat", extra_env=env, ready=False)
        conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
        try:
            job = trigger(client, REDIS_JOB, "BenchRecoveryRedis")
            figures: dict[str, Any] = {}
            if fault:
                _wait(lambda: _success(conn, job.job_id) >= REDIS_JOB // 3, 120, "a third")
                server.kill()
                time.sleep(1.0)
                server.start()
                back = time.perf_counter()
                at_restart = _success(conn, job.job_id)
                resumed = _wait(
                    lambda: _success(conn, job.job_id) > at_restart + 200, 300, "work again"
                )
                figures["resumed_after_redis_back_s"] = round(resumed - back, 1)
            done = wait_terminal(conn, job.job_id, timeout=600)
            if fault:
                figures["ended_after_redis_back_s"] = round(done - back, 1)
            figures["job_s"] = round(done - job.started, 1)
            figures.update(check_and_stages(conn, job.job_id, REDIS_JOB))
            return figures
        finally:
            conn.close()
            for process in (*workers, beat):
                process.stop()


def _dispatcher_run(ctx: BenchContext, fault: bool) -> dict[str, Any]:
    from api import create_app

    client = create_app().test_client()
    ctx.flush_broker()
    prefix = "r-dispatcher-fault" if fault else "r-dispatcher-clean"
    conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
    with running(ctx, (f"{prefix}-worker-0", 0, "worker"), (f"{prefix}-worker-1", 0, "worker")):
        beat = ctx.start(f"{prefix}-beat", 0, "beat", ready=False)
        dispatcher = ctx.start(f"{prefix}-dispatcher", 0, "dispatcher")
        try:
            job = trigger(client, DISPATCHER_JOB, "BenchRecoveryDispatcher")
            figures: dict[str, Any] = {}
            if fault:
                _wait(lambda: _written(conn, job.job_id) >= 40_000, 120, "40,000 rows")
                dispatcher.proc.kill()
                dispatcher.proc.wait(10)
                dispatcher.stop()
                written = _written(conn, job.job_id)
                figures["rows_written_at_kill"] = written
                time.sleep(1.0)
                dispatcher = ctx.start(f"{prefix}-dispatcher-again", 0, "dispatcher")
                back = time.perf_counter()
                resumed = _wait(
                    lambda: _written(conn, job.job_id) > written, 300, "the fan-out again"
                )
                figures["fan_out_resumed_after_restart_s"] = round(resumed - back, 1)
            done = wait_terminal(conn, job.job_id, timeout=600)
            if fault:
                figures["ended_after_restart_s"] = round(done - back, 1)
            figures["job_s"] = round(done - job.started, 1)
            figures.update(check_and_stages(conn, job.job_id, DISPATCHER_JOB))
            return figures
        finally:
            conn.close()
            dispatcher.stop()
            beat.stop()


def run_recovery(ctx: BenchContext) -> dict[str, Any]:
    """Both faults, each beside the same job without it."""
    started = time.perf_counter()
    redis_clean = _redis_run(ctx, fault=False)
    redis_fault = _redis_run(ctx, fault=True)
    dispatcher_clean = _dispatcher_run(ctx, fault=False)
    dispatcher_fault = _dispatcher_run(ctx, fault=True)
    return {
        "settings": "defaults: heartbeat 5 s, dead after 20 s, sweep every 10 s",
        "redis_restart_empty": {"without_fault": redis_clean, "with_fault": redis_fault},
        "dispatcher_kill_during_fan_out": {
            "without_fault": dispatcher_clean,
            "with_fault": dispatcher_fault,
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
