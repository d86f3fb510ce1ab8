"""(d) long AI calls: one job of ``n`` executions whose simulated calls take seconds, with a
spread (2 s + U[0, 8 s]) or a long tail (lognormal, median 3 s, p99 30 s), run by the
Procfile's ``dispatcher`` and ``worker`` processes.

What it reports: throughput end to end (the trigger's request to the job's end), the
executions in flight (leased rows, sampled every 0.2 s: peak and mean), and the ratio of
the throughput to its bound ``mean in flight / mean latency`` — 100 % when no place of
the workers' capacity ever waits for anything but a call. And the workers' RSS per 1,000
executions in flight (what ``JOBYARD_WORKER_CAPACITY`` is sized from).

Import this only after ``tests.bench.run`` has set the environment (it reads settings).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import psycopg

from shared.simulated_latency import parse_latency
from tests.bench.infra import CpuMeter, Sampler, libpq_url, tree_rss
from tests.bench.scenarios import (
    TERMINAL,
    BenchContext,
    RedisSampler,
    _profile,
    check_and_stages,
    job_status,
    trigger,
    wait_terminal,
)

MOST = 0.99
UNIFORM = "uniform:2000:10000"  # 2 s + U[0, 8 s]: a 6 s mean
LOGNORMAL = "lognormal:3000:30000"  # median 3 s, p99 30 s


def wait_done(conn: psycopg.Connection[Any], job_id: str, count: int, timeout: float) -> float:
    """perf_counter when a 20 ms poll first saw ``count`` executions of the job finished."""
    deadline = time.perf_counter() + timeout
    while True:
        status = job_status(conn, job_id)
        if status[3] + status[4] >= count or status[0] in TERMINAL:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"job {job_id} at the deadline: {status}")
        time.sleep(0.02)


def run_long_calls(
    ctx: BenchContext, scenario: str, n: int, latency: str, processes: int, capacity: int
) -> dict[str, Any]:
    """One job of ``n`` executions at ``latency`` (a JOBYARD_SIMULATED_LATENCY value)."""
    from api import create_app  # the API after the environment is set

    distribution = parse_latency(latency)
    client = create_app().test_client()
    ctx.flush_broker()
    env = {"JOBYARD_SIMULATED_LATENCY": latency, "JOBYARD_WORKER_CAPACITY": str(capacity)}
    conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
    with ExitStack() as stack:
        dispatcher = ctx.start(f"{scenario}-dispatcher", 0, "dispatcher", extra_env=env)
        stack.callback(dispatcher.stop)
        workers = []
        for i in range(processes):
            worker = ctx.start(f"{scenario}-worker-{i}", 0, "worker", extra_env=env)
            stack.callback(worker.stop)
            workers.append(worker)
        import psutil

        idle_rss = [tree_rss(psutil.Process(w.proc.pid)) for w in workers]
        samplers = [Sampler(workers[0].proc.pid, ctx.database_url)] + [
            Sampler(w.proc.pid, None) for w in workers[1:]
        ]
        redis_sampler = RedisSampler(ctx.redis_url)
        cpu = CpuMeter([w.proc.pid for w in workers], {"dispatcher": dispatcher.proc.pid})
        for sampler in (*samplers, redis_sampler):
            sampler.start()
        cpu.begin()
        with (
            _profile(ctx, scenario, workers[0].proc.pid),
            _profile(ctx, f"{scenario}-dispatcher", dispatcher.proc.pid),
        ):
            job = trigger(client, n, f"Bench{scenario}")
            most_done = wait_done(conn, job.job_id, int(n * MOST), timeout=300 + n / 50)
            done = wait_terminal(conn, job.job_id, timeout=300 + n / 50)
        cpu_seconds = cpu.end()
        for sampler in samplers:
            sampler.stop()
        redis_figures = redis_sampler.stop()
    try:
        stages = check_and_stages(conn, job.job_id, n)
    finally:
        conn.close()
    elapsed = done - job.started
    in_flight = samplers[0]
    mean_latency = distribution.mean_seconds()
    rate = n / elapsed
    bound = in_flight.mean(in_flight.in_flight_total) / mean_latency
    peak_per_worker = in_flight.peak_in_flight / processes
    rss_growth = [max(0, s.peak_rss - idle) for s, idle in zip(samplers, idle_rss, strict=True)]
    return {
        "executions": n,
        "simulated_latency": latency,
        "mean_latency_s": round(mean_latency, 3),
        "worker_processes": processes,
        "worker_capacity": capacity,
        "claimers_per_process": ctx.claimers,
        "trigger_request_ms": round(job.request_ms, 1),
        "elapsed_s": round(elapsed, 3),
        "executions_per_s": round(rate, 1),
        # A long tail's last calls alone take minutes (the slowest of 100,000 lognormal
        # draws with a 30 s p99 is about 200 s): the rate until 99% are done shows the
        # engine, the end-to-end rate the tail.
        "executions_per_s_to_99_percent": round(n * MOST / (most_done - job.started), 1),
        "peak_in_flight": in_flight.peak_in_flight,
        "mean_in_flight": in_flight.mean(in_flight.in_flight_total),
        "latency_bound_per_s": round(bound, 1),
        "share_of_bound": round(rate / bound, 3) if bound else None,
        "idle_rss_mb_per_worker": [round(r / 2**20, 1) for r in idle_rss],
        "peak_rss_mb_per_worker": [round(s.peak_rss / 2**20, 1) for s in samplers],
        "rss_mb_per_1000_in_flight": round(max(rss_growth) / 2**20 / (peak_per_worker / 1000), 1)
        if peak_per_worker
        else None,
        "cpu_seconds": cpu_seconds,
        "cpu_ms_per_execution": {
            "workers": round(1000 * cpu_seconds["worker"] / n, 3),
            "postgres": round(1000 * cpu_seconds["postgres"] / n, 3),
            "workers+dispatcher+postgres+redis": round(
                1000
                * sum(cpu_seconds[k] for k in ("worker", "dispatcher", "postgres", "redis"))
                / n,
                3,
            ),
        },
        **redis_figures,
        **stages,
    }
