"""The measured scenarios of ``make bench``.

(a*) the engine's own limit: bare Celery at its best on this machine — one solo-pool
     worker process per core, prefetch 4, early acks, no task events, WARNING logs — draining
     a queue filled first;
(a)  the Procfile's bare task: ``bench.noop`` (late acks) through the Procfile's ``worker``
     line, the queue filled first;
(b)  one trigger of N executions through the API at 0 ms simulated latency, with the
     Procfile's ``dispatcher`` and 1, then 2, execution-worker processes; plus one
     100,000-execution job for the fan-out time;
(c)  the same at 500 ms, 2 worker processes: executions in flight against the latency bound;
(f)  fairness: a 50-execution job of another organisation submitted while a 200,000-execution
     job runs, beside the same small job on an idle system; Redis sampled meanwhile.

Import this only after ``tests.bench.run`` has set the environment (it reads settings).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from shared.messaging import publisher
from shared.messaging.queues import EXECUTIONS_QUEUE, NOOP_EARLY_ACK_TASK, NOOP_TASK
from tests.bench.infra import (
    ROOT,
    BenchWorker,
    CpuMeter,
    Sampler,
    broker_backlog,
    libpq_url,
)
from tests.support import assert_counters_exact, make_tenant

MODELS = ("gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash", "sonar")
MAX_RUNS = 50
TERMINAL = ("completed", "failed", "partial_failed", "canceled")


@dataclass
class BenchContext:
    """What every scenario needs: where things are and how to start a worker."""

    database_url: str
    redis_url: str
    claimers: int
    cores: int
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

    def start(
        self,
        name: str,
        latency_ms: float,
        entry: str = "worker",
        command: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
        ready: bool = True,
    ) -> BenchWorker:
        """Start one Procfile process (or ``command``) and wait until it is ready (unless
        ``ready`` is false: beat says nothing of the kind)."""
        log_path = self.var_dir / f"bench-{name}.log"
        self.logs[name] = str(log_path)
        worker = BenchWorker(
            name=name,
            entry=entry,
            concurrency=self.claimers,
            env={**self.worker_env(latency_ms), **(extra_env or {})},
            log_path=log_path,
            command=command,
        )
        try:
            if ready:
                worker.wait_ready()
        except BaseException:
            worker.stop()
            raise
        return worker


@contextmanager
def running(ctx: BenchContext, *workers: tuple[str, float, str]) -> Iterator[list[BenchWorker]]:
    """Start (name, latency, Procfile entry) processes; stop them all afterwards."""
    with _started(lambda w: ctx.start(w[0], w[1], w[2]), workers) as started:
        yield started


@contextmanager
def running_commands(
    ctx: BenchContext, commands: list[tuple[str, list[str]]]
) -> Iterator[list[BenchWorker]]:
    """Start (name, command) processes at 0 ms latency; stop them all afterwards."""
    with _started(lambda c: ctx.start(c[0], 0, command=c[1]), commands) as started:
        yield started


@contextmanager
def _started(start: Callable[[Any], BenchWorker], specs: Any) -> Iterator[list[BenchWorker]]:
    with ExitStack() as stack:
        started = []
        for spec in specs:
            worker = start(spec)
            stack.callback(worker.stop)
            started.append(worker)
        yield started


def _profile(ctx: BenchContext, scenario: str, pid: int) -> Any:
    if ctx.profiler is None:
        return _Null()
    return ctx.profiler(scenario, pid)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# ---------------------------------------------------------------------------------------
# (a*) and (a): bare Celery.


def publish_noops(task: str, n: int) -> float:
    """Publish ``n`` no-ops on one producer; returns the seconds it took."""
    app = publisher.producer_app()
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for seq in range(n):
            app.send_task(task, args=[seq], producer=producer)
    return time.perf_counter() - started


def drain_time(client: redis.Redis, n: int, timeout: float) -> float:
    """From the first message taken off the filled queue until the queue is empty and
    nothing is unacknowledged (polled every 5 ms); the workers are already starting."""
    deadline = time.perf_counter() + timeout
    first_taken: float | None = None
    empty_since: float | None = None
    while True:
        now = time.perf_counter()
        waiting, unacked = broker_backlog(client, EXECUTIONS_QUEUE)
        if first_taken is None and waiting < n:
            first_taken = now
        if waiting == 0 and unacked == 0:
            if empty_since is not None:  # twice in a row: nothing was in between
                return empty_since - (first_taken or empty_since)
            empty_since = now
        else:
            empty_since = None
        if now > deadline:
            raise TimeoutError(f"{waiting} waiting and {unacked} unacked at the deadline")
        time.sleep(0.005)


def solo_command(index: int, quiet: bool) -> list[str]:
    """One solo-pool process, prefetch 4; ``quiet``: WARNING logs, no gossip/heartbeat."""
    extra = (
        "--loglevel WARNING --without-gossip --without-mingle --without-heartbeat"
        if quiet
        else "--loglevel INFO"
    )
    return [
        "bash",
        "-c",
        f"exec celery --app worker worker --queues {EXECUTIONS_QUEUE} --pool solo "
        f"--prefetch-multiplier 4 --hostname bench-solo-{index}@%h {extra}",
    ]


def run_bare(ctx: BenchContext, n: int, *, best: bool, quiet: bool = True) -> dict[str, Any]:
    """(a*) with ``best`` (one solo process per core, early acks; ``quiet``: no task events
    and WARNING logs, else Flower's events and INFO logs as deployed), else (a)."""
    ctx.flush_broker()
    task = NOOP_EARLY_ACK_TASK if best else NOOP_TASK
    publish_s = publish_noops(task, n)
    client = redis.Redis.from_url(ctx.redis_url)
    workers: list[BenchWorker] = []
    try:
        if best:
            # BenchWorker waits for " ready." in the log: say it at WARNING too.
            env = {"JOBYARD_TASK_EVENTS": "false" if quiet else "true"}
            for i in range(ctx.cores):
                log_path = ctx.var_dir / f"bench-a-star-{i}.log"
                ctx.logs[f"a-star-{i}"] = str(log_path)
                workers.append(
                    BenchWorker(
                        name=f"a-star-{i}",
                        entry="worker",
                        concurrency=1,
                        env={**ctx.worker_env(0), **env},
                        log_path=log_path,
                        command=solo_command(i, quiet),
                    )
                )
        else:
            workers.append(
                BenchWorker(
                    name="a",
                    entry="worker",
                    concurrency=ctx.claimers,
                    env=ctx.worker_env(0),
                    log_path=ctx.var_dir / "bench-a.log",
                )
            )
        cpu = CpuMeter([w.proc.pid for w in workers])
        cpu.begin()
        elapsed = drain_time(client, n, timeout=60 + n / 200)
        cpu_seconds = cpu.end()
    finally:
        for worker in workers:
            worker.stop()
        client.close()
    return {
        "messages": n,
        "processes": len(workers),
        "task_events_and_info_logs": best and not quiet,
        "method": "queue filled first; first message taken -> queue empty, nothing unacked",
        "elapsed_s": round(elapsed, 3),
        "tasks_per_s": round(n / elapsed, 1),
        "publish_s": round(publish_s, 3),
        "cpu_seconds": cpu_seconds,
        "worker_cpu_ms_per_task": round(1000 * cpu_seconds["worker"] / n, 3),
    }


# ---------------------------------------------------------------------------------------
# (b), (c) and (f): jobs through the API.


def plan_job(n: int, models: int = 4) -> tuple[int, int, int]:
    """(queries, models, runs) with queries x models x runs == n, runs <= 50."""
    models = next(m for m in (models, 4, 3, 2, 1) if n % m == 0)
    rest = n // models
    runs = next(r for r in range(min(MAX_RUNS, rest), 0, -1) if rest % r == 0)
    return rest // runs, models, runs


@dataclass
class Trigger:
    job_id: str
    started: float  # perf_counter before the request
    request_ms: float


def trigger(client: Any, n: int, name: str) -> Trigger:
    queries, models, runs = plan_job(n)
    tenant = make_tenant(n_queries=queries, name=name)
    started = time.perf_counter()
    response = client.post(
        "/api/jobs/trigger",
        headers=tenant.headers(),
        json={"aiModels": list(MODELS[:models]), "executionCount": runs},
    )
    request_ms = (time.perf_counter() - started) * 1000
    body = response.get_json()
    if response.status_code != 201 or body["totalExecutions"] != n:
        raise AssertionError(f"trigger answered {response.status_code}: {body}")
    return Trigger(body["id"], started, request_ms)


def job_status(conn: psycopg.Connection[Any], job_id: str) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT status, pending, retrying, success, failed FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return tuple(row)


def wait_terminal(conn: psycopg.Connection[Any], job_id: str, timeout: float) -> float:
    """perf_counter when a 20 ms poll first saw the job terminal."""
    deadline = time.perf_counter() + timeout
    while True:
        status = job_status(conn, job_id)
        if status[0] in TERMINAL:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"job {job_id} at the deadline: {status}")
        time.sleep(0.02)


STAGES_SQL = """
SELECT extract(epoch FROM j.fanned_out_at - j.created_at),
       extract(epoch FROM j.finished_at - j.created_at),
       (SELECT count(*) FROM executions e WHERE e.job_id = j.id),
       (SELECT max(attempts) FROM executions e WHERE e.job_id = j.id)
FROM jobs j WHERE j.id = %s
"""


def check_and_stages(conn: psycopg.Connection[Any], job_id: str, n: int) -> dict[str, Any]:
    """Counters exact and every execution a success; the job's own stage times."""
    job = assert_counters_exact(uuid.UUID(job_id))
    if (job.status, job.success, job.failed) != ("completed", n, 0):
        raise AssertionError(f"job {job_id}: {job.status} {job.success}/{n}, {job.failed} failed")
    row = conn.execute(STAGES_SQL, (job_id,)).fetchone()
    assert row is not None
    fanout_s, finished_s, rows, max_attempts = row
    return {
        "counters_exact": True,
        "fanout_s": round(float(fanout_s), 3) if fanout_s is not None else None,
        "job_s": round(float(finished_s), 3) if finished_s is not None else None,
        "rows": int(rows),
        "max_attempts_used": int(max_attempts or 0),
    }


class RedisSampler(threading.Thread):
    """Every 0.2 s: the executions queue's length and Redis' used memory."""

    def __init__(self, url: str) -> None:
        super().__init__(name="bench-redis-sampler", daemon=True)
        self.client = redis.Redis.from_url(url)
        self.peak_queue = 0
        self.peak_used_memory = 0
        self.baseline_memory = int(self.client.info("memory")["used_memory"])
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            waiting, _ = broker_backlog(self.client, EXECUTIONS_QUEUE)
            self.peak_queue = max(self.peak_queue, waiting)
            used = int(self.client.info("memory")["used_memory"])
            self.peak_used_memory = max(self.peak_used_memory, used)
            self._stop_event.wait(0.2)

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join(5)
        self.client.close()
        return {
            "peak_executions_queue_messages": self.peak_queue,
            "redis_used_memory_peak_mb": round(self.peak_used_memory / 2**20, 1),
            "redis_used_memory_growth_mb": round(
                (self.peak_used_memory - self.baseline_memory) / 2**20, 1
            ),
        }


def run_job(
    ctx: BenchContext, scenario: str, n: int, latency_ms: float, processes: int
) -> dict[str, Any]:
    """One job of ``n`` executions with the dispatcher and ``processes`` workers."""
    from api import create_app  # the API after the environment is set

    client = create_app().test_client()
    ctx.flush_broker()
    entries = [(f"{scenario}-dispatcher", latency_ms, "dispatcher")] + [
        (f"{scenario}-worker-{i}", latency_ms, "worker") for i in range(processes)
    ]
    conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
    with running(ctx, *entries) as (dispatcher, *workers):
        samplers = [Sampler(workers[0].proc.pid, ctx.database_url)] + [
            Sampler(w.proc.pid, None) for w in workers[1:]
        ]
        redis_sampler = RedisSampler(ctx.redis_url)
        cpu = CpuMeter([w.proc.pid for w in workers], {"dispatcher": dispatcher.proc.pid})
        for sampler in (*samplers, redis_sampler):
            sampler.start()
        cpu.begin()
        with _profile(ctx, scenario, workers[0].proc.pid):
            job = trigger(client, n, f"Bench{scenario}")
            done = wait_terminal(conn, job.job_id, timeout=120 + n / 100)
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
    figures: dict[str, Any] = {
        "executions": n,
        "simulated_latency_ms": latency_ms,
        "worker_processes": processes,
        "claimers_per_process": ctx.claimers,
        "trigger_request_ms": round(job.request_ms, 1),
        "elapsed_s": round(elapsed, 3),
        "executions_per_s": round(n / elapsed, 1),
        "peak_in_flight": in_flight.peak_in_flight,
        "mean_in_flight": in_flight.mean(in_flight.in_flight_total),
        "peak_rss_mb_per_worker": [round(s.peak_rss / 2**20, 1) for s in samplers],
        "cpu_seconds": cpu_seconds,
        "cpu_ms_per_execution": {
            "workers": round(1000 * cpu_seconds["worker"] / n, 3),
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
    if latency_ms:
        bound = figures["mean_in_flight"] / (latency_ms / 1000)
        figures["latency_bound_per_s"] = round(bound, 1)
        figures["share_of_bound"] = round(figures["executions_per_s"] / bound, 3) if bound else None
    return figures


def run_fairness(
    ctx: BenchContext, big: int, small: int, latency_ms: float, processes: int
) -> dict[str, Any]:
    """A small job of another organisation, alone, then beside a big job."""
    from api import create_app

    client = create_app().test_client()
    ctx.flush_broker()
    entries = [("f-dispatcher", latency_ms, "dispatcher")] + [
        (f"f-worker-{i}", latency_ms, "worker") for i in range(processes)
    ]
    conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
    try:
        with running(ctx, *entries):
            alone = trigger(client, small, "SmallAlone")
            alone_s = wait_terminal(conn, alone.job_id, 60) - alone.started
            redis_sampler = RedisSampler(ctx.redis_url)
            redis_sampler.start()
            big_job = trigger(client, big, "BigJob")
            deadline = time.perf_counter() + 120
            while job_status(conn, big_job.job_id)[3] < min(20_000, big // 5):
                if time.perf_counter() > deadline:
                    raise TimeoutError("the big job made no progress")
                time.sleep(0.05)
            beside = trigger(client, small, "SmallBeside")
            beside_s = wait_terminal(conn, beside.job_id, 120) - beside.started
            big_when_small_done = job_status(conn, big_job.job_id)
            big_done = wait_terminal(conn, big_job.job_id, timeout=120 + big / 100)
            redis_figures = redis_sampler.stop()
        for job_id, n in ((alone.job_id, small), (beside.job_id, small), (big_job.job_id, big)):
            check_and_stages(conn, job_id, n)
    finally:
        conn.close()
    return {
        "big_job_executions": big,
        "small_job_executions": small,
        "simulated_latency_ms": latency_ms,
        "worker_processes": processes,
        "small_job_alone_s": round(alone_s, 3),
        "small_job_beside_big_s": round(beside_s, 3),
        "big_job_success_when_small_done": big_when_small_done[3],
        "big_job_s": round(big_done - big_job.started, 3),
        "big_job_executions_per_s": round(big / (big_done - big_job.started), 1),
        "elapsed_s": round(big_done - alone.started, 3),
        **redis_figures,
    }


__all__ = ["ROOT", "BenchContext", "run_bare", "run_fairness", "run_job"]
