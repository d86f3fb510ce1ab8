"""Benchmark infrastructure: the worker subprocess, samplers, the database and the broker.

Nothing here reads jobyard's settings: the caller (``tests.bench.run``) sets the
environment first and passes every URL explicitly, so the worker subprocess and this
process agree on the database and the Redis DB number.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]

# kombu's Redis transport: a queue is a list per priority step (the default steps are
# 0, 3, 6, 9; step 0 is the bare queue name) and every delivered-but-unacked message
# sits in the ``unacked`` hash, indexed by delivery time in the ``unacked_index`` zset,
# until the worker acks it (``acks_late``: after the task has run).
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"

# Rows of ``executions`` a worker holds right now: claimed (a live lease), not finished.
# A leased row is dispatched: the condition lets PostgreSQL read the small partial index
# of handed-out rows (ix_executions_outstanding) instead of scanning every execution of
# the run five times a second (its own cost showed in PostgreSQL's CPU).
IN_FLIGHT_SQL = (
    "SELECT count(*) FROM executions WHERE dispatched_at IS NOT NULL "
    "AND status IN ('pending', 'retrying') AND lease_expires_at > now()"
)
# Backends of this database waiting for a lock (e.g. on the job row the counters move).
LOCK_WAITERS_SQL = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def libpq_url(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql://...`` (what psycopg accepts)."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


# ---------------------------------------------------------------------------------------
# PostgreSQL database and Redis DB of the run.


def recreate_database(server_url: str, name: str) -> None:
    """Drop (forcefully) and create the benchmark database on the server."""
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def broker_backlog(client: redis.Redis, queue: str) -> tuple[int, int]:
    """(messages waiting in ``queue``, messages delivered but not yet acked) in one trip."""
    pipe = client.pipeline(transaction=False)
    for key in queue_keys(queue):
        pipe.llen(key)
    pipe.hlen(UNACKED_KEY)
    pipe.zcard(UNACKED_INDEX_KEY)
    *lengths, unacked, indexed = pipe.execute()
    return sum(lengths), max(unacked, indexed)


# ---------------------------------------------------------------------------------------
# The worker.


def procfile_command(entry: str) -> list[str]:
    """The Procfile's line for ``entry``, run by bash so that ``${VAR:-default}`` expands:
    the bench starts exactly what ``make up`` starts (queues, pool, concurrency)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == entry:
            return ["bash", "-c", f"exec {command.strip()}"]
    raise KeyError(f"no '{entry}' line in the Procfile")


class BenchWorker:
    """A real ``celery worker`` subprocess with its own environment and log file."""

    def __init__(
        self,
        *,
        name: str,
        entry: str,
        concurrency: int,
        env: dict[str, str],
        log_path: Path,
        wrap: list[str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.log_path = log_path
        self.concurrency = concurrency
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        command = command or procfile_command(entry)
        env = {
            **env,
            "WORKER_CLAIMERS": str(concurrency),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }
        self.proc = subprocess.Popen(
            [*(wrap or []), *command],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_tail()}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (warm shutdown), then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


# ---------------------------------------------------------------------------------------
# Sampling: worker RSS and executions in flight, every 0.2 s.


def tree_rss(proc: psutil.Process) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


class Sampler(threading.Thread):
    """Every ``interval`` seconds: the worker tree's RSS and (optionally) leased executions."""

    def __init__(self, pid: int, database_url: str | None, interval: float = 0.2) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.process = psutil.Process(pid)
        self.database_url = database_url
        self.interval = interval
        self.peak_rss = 0
        self.peak_in_flight = 0
        self.in_flight_total = 0
        self.peak_lock_waiters = 0
        self.lock_waiters_total = 0
        self.samples = 0
        self.error: str | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        conn = (
            psycopg.connect(libpq_url(self.database_url), autocommit=True)
            if self.database_url
            else None
        )
        try:
            while not self._stop_event.is_set():
                with contextlib.suppress(psutil.Error):
                    self.peak_rss = max(self.peak_rss, tree_rss(self.process))
                if conn is not None:
                    row = conn.execute(IN_FLIGHT_SQL).fetchone()
                    in_flight = int(row[0]) if row else 0
                    self.peak_in_flight = max(self.peak_in_flight, in_flight)
                    self.in_flight_total += in_flight
                    row = conn.execute(LOCK_WAITERS_SQL).fetchone()
                    waiters = int(row[0]) if row else 0
                    self.peak_lock_waiters = max(self.peak_lock_waiters, waiters)
                    self.lock_waiters_total += waiters
                self.samples += 1
                self._stop_event.wait(self.interval)
        except Exception as exc:  # keep the run going; report the sampler's failure
            self.error = repr(exc)
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def mean(self, total: int) -> float:
        return round(total / self.samples, 2) if self.samples else 0.0


# ---------------------------------------------------------------------------------------
# CPU accounting: which process group burned the machine's two cores during a scenario.


def _cpu(p: psutil.Process, *, with_reaped_children: bool = False) -> float:
    try:
        t = p.cpu_times()
    except psutil.Error:
        return 0.0
    total = t.user + t.system
    if with_reaped_children:
        total += t.children_user + t.children_system
    return total


@dataclass
class CpuMeter:
    """CPU seconds of the worker, PostgreSQL, Redis and this process between two snapshots.

    PostgreSQL's backends come and go; the postmaster's ``children_*`` times hold the ones
    it has reaped, so live backends plus the postmaster's reaped children is a running sum.
    The figures include any other client of the same servers (other databases, other
    Redis DBs) during the window.
    """

    worker_pids: list[int]
    other_pids: dict[str, int] = field(default_factory=dict)  # e.g. {"dispatcher": pid}
    start: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        groups = {"worker": 0.0, "postgres": 0.0, "redis": 0.0, "bench": 0.0}
        for name in self.other_pids:
            groups[name] = 0.0
        for group, pids in [("worker", self.worker_pids)] + [
            (name, [pid]) for name, pid in self.other_pids.items()
        ]:
            for pid in pids:
                try:
                    root = psutil.Process(pid)
                    groups[group] += sum(_cpu(p) for p in [root, *root.children(recursive=True)])
                except psutil.Error:
                    pass
        groups["bench"] = _cpu(psutil.Process())
        for p in psutil.process_iter(["name"]):
            name = p.info.get("name") or ""
            if name.startswith("postgres"):
                try:
                    is_postmaster = p.parent() is None or (p.parent().name() != "postgres")
                except psutil.Error:
                    is_postmaster = False
                groups["postgres"] += _cpu(p, with_reaped_children=is_postmaster)
            elif name.startswith("redis-server"):
                groups["redis"] += _cpu(p)
        times = psutil.cpu_times()
        idle = ("idle", "iowait", "guest", "guest_nice")  # guest time is counted in user too
        groups["machine_busy"] = sum(times) - sum(getattr(times, f, 0.0) for f in idle)
        return groups

    def begin(self) -> None:
        self.start = self.snapshot()

    def end(self) -> dict[str, float]:
        """CPU seconds per group, plus ``other``: the rest of the machine's busy time
        (another program running during the window shows here and skews the figures)."""
        now = self.snapshot()
        delta = {k: round(now[k] - self.start.get(k, 0.0), 2) for k in now}
        machine_busy = delta.pop("machine_busy")
        delta["other"] = round(max(0.0, machine_busy - sum(delta.values())), 2)
        return delta


class DatabaseBackendsCpu(threading.Thread):
    """CPU seconds of the PostgreSQL backends serving one database, from ``begin`` to
    ``end`` (every ``interval`` seconds it lists them in ``pg_stat_activity`` and reads
    each one's CPU): unlike CpuMeter's ``postgres``, other databases' clients (other test
    runs on the same server) do not count. A backend that connects and exits between two
    samples is missed; the processes' pools keep theirs open.
    """

    def __init__(self, database_url: str, interval: float = 0.2) -> None:
        super().__init__(name="bench-backends-cpu", daemon=True)
        self.database_url = database_url
        self.interval = interval
        self.first: dict[int, float] = {}  # CPU seconds when first seen (0 if it began later)
        self.last: dict[int, float] = {}
        self._sampled_once = False
        self._stop_event = threading.Event()

    def _sample(self, conn: psycopg.Connection[Any]) -> None:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        for (pid,) in rows:
            try:
                cpu = _cpu(psutil.Process(pid))
            except psutil.Error:
                continue
            self.first.setdefault(pid, cpu if not self._sampled_once else 0.0)
            self.last[pid] = cpu

    def run(self) -> None:
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as conn:
            self._sample(conn)
            self._sampled_once = True
            while not self._stop_event.wait(self.interval):
                self._sample(conn)
            self._sample(conn)

    def begin(self) -> None:
        self.start()
        while not self._sampled_once and self.is_alive():
            time.sleep(0.01)

    def end(self) -> float:
        self._stop_event.set()
        self.join(10)
        return round(sum(self.last[pid] - self.first[pid] for pid in self.last), 2)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_mb": round(psutil.virtual_memory().total / 2**20),
        "python": sys.version.split()[0],
        "load_average_at_start": load_average(),
    }
