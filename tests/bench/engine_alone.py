"""(e) the engine alone: a job of the ``echo`` type (examples/echo_job_type, an installed
package: each execution's result is its item, with no work of its own) through the whole
engine — fan-out, dispatch, claim, finish, counters — with the Procfile's ``dispatcher``
and one ``worker`` per core, as they run.

Figures: executions/s from the job's creation to its end, and CPU milliseconds per
execution in the worker processes, the dispatcher and the PostgreSQL backends of the
benchmark's database (Redis beside them), to set against bare Celery at its best (a*)
in the same run: what an execution costs the engine when its own work costs nothing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg

from shared.db import session_scope
from shared.engine import job_types
from shared.engine.jobs import new_job
from shared.messaging import publisher
from tests.bench.infra import (
    CpuMeter,
    DatabaseBackendsCpu,
    libpq_url,
    procfile_command,
)
from tests.bench.scenarios import (
    BenchContext,
    RedisSampler,
    _profile,
    check_and_stages,
    running_commands,
    wait_terminal,
)
from tests.support import make_tenant

ECHO_JOB_TYPE = "echo"


def require_echo() -> None:
    """The echo job type must be installed (``make bench`` installs it)."""
    try:
        job_types.spec_for(ECHO_JOB_TYPE)
    except job_types.UnknownJobType:
        raise RuntimeError(
            "(e) runs the echo job type: pip install -e examples/echo_job_type"
        ) from None


def submit_echo_job(organisation_id: uuid.UUID, n: int) -> tuple[str, float]:
    """Write an echo job of ``n`` executions and publish its fan-out, as the API does after
    its commit; returns (job id, perf_counter before the write)."""
    started = time.perf_counter()
    with session_scope() as session:
        job = new_job(
            organisation_id=organisation_id,
            job_type=ECHO_JOB_TYPE,
            total=n,
            payload={"items": list(range(n))},
        )
        session.add(job)
        session.flush()
        job_id = job.id
    if publisher.publish_fan_outs([job_id]):
        raise RuntimeError("the echo job's fan-out could not be published")
    return str(job_id), started


def run_engine_alone(ctx: BenchContext, n: int, processes: int) -> dict[str, Any]:
    """One echo job of ``n`` executions with the dispatcher and ``processes`` workers."""
    require_echo()
    ctx.flush_broker()
    tenant = make_tenant(n_queries=1, name="EngineAlone")
    commands = [("e-dispatcher", procfile_command("dispatcher"))] + [
        (f"e-worker-{i}", procfile_command("worker")) for i in range(processes)
    ]
    conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
    try:
        with running_commands(ctx, commands) as (dispatcher, *workers):
            redis_sampler = RedisSampler(ctx.redis_url)
            backends = DatabaseBackendsCpu(ctx.database_url)
            cpu = CpuMeter([w.proc.pid for w in workers], {"dispatcher": dispatcher.proc.pid})
            redis_sampler.start()
            backends.begin()
            cpu.begin()
            with _profile(ctx, "e", workers[0].proc.pid):
                job_id, started = submit_echo_job(tenant.org_id, n)
                done = wait_terminal(conn, job_id, timeout=120 + n / 100)
            cpu_seconds = cpu.end()
            cpu_seconds["postgres_bench_database"] = backends.end()
            redis_figures = redis_sampler.stop()
        stages = check_and_stages(conn, job_id, n)
    finally:
        conn.close()
    elapsed = done - started

    def per_execution_ms(seconds: float) -> float:
        return round(1000 * seconds / n, 3)

    return {
        "executions": n,
        "job_type": ECHO_JOB_TYPE,
        "worker_processes": processes,
        "claimers_per_process": ctx.claimers,
        "elapsed_s": round(elapsed, 3),
        "executions_per_s": round(n / elapsed, 1),
        "cpu_seconds": cpu_seconds,
        "cpu_ms_per_execution": {
            "workers": per_execution_ms(cpu_seconds["worker"]),
            "dispatcher": per_execution_ms(cpu_seconds["dispatcher"]),
            "postgres_bench_database": per_execution_ms(cpu_seconds["postgres_bench_database"]),
            "redis": per_execution_ms(cpu_seconds["redis"]),
            "workers+dispatcher+postgres+redis": per_execution_ms(
                cpu_seconds["worker"]
                + cpu_seconds["dispatcher"]
                + cpu_seconds["postgres_bench_database"]
                + cpu_seconds["redis"]
            ),
        },
        **redis_figures,
        **stages,
    }
