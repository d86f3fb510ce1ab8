"""Test support: real worker processes, tenants, and the counter invariant."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from shared.accounts import auth
from shared.accounts import organisations as tenancy
from shared.db import connection_scope, session_scope
from shared.engine.claim import claim_group
from shared.engine.fanout import fan_out_job
from shared.engine.finish import finish_batch
from shared.engine.outcomes import Outcome
from shared.mentionlab import projects
from shared.messaging.queues import ALL_QUEUES
from shared.migrate import load_every_model
from shared.models import Execution, Job

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Tenant:
    """An organisation with a user, a project with queries, an API key and a token."""

    org_id: uuid.UUID
    user_id: uuid.UUID
    project_id: uuid.UUID
    query_ids: list[uuid.UUID]
    api_key: str
    token: str

    def headers(self, *, bearer: bool = False, project: bool = True) -> dict[str, str]:
        """Auth (API key by default, else the JWT) and context headers."""
        headers = (
            {"Authorization": f"Bearer {self.token}"} if bearer else {"x-api-key": self.api_key}
        )
        headers["x-organisation-id"] = str(self.org_id)
        if project:
            headers["x-project-id"] = str(self.project_id)
        return headers


def make_tenant(n_queries: int = 3, name: str = "Acme") -> Tenant:
    """Create a whole tenant directly through the services."""
    with session_scope() as session:
        org = tenancy.create_organisation(session, f"{name} Org")
        user = tenancy.create_user(
            session, f"{uuid.uuid4().hex[:10]}@example.test", "Jane", "Doe", org.id, "admin"
        )
        principal = auth.Principal(org.id, user.id)
        project = projects.create_project(
            session,
            principal,
            {"name": name, "name_aliases": [f"{name} Inc"], "competitors": ["Globex", "Initech"]},
        )
        queries = projects.create_queries(
            session,
            project,
            [
                {"query": f"best tools for task {i}", "language": "en", "country": "US"}
                for i in range(n_queries)
            ],
        )
        _, api_key = auth.create_api_key(session, org.id, "test", user.id)
        tenant = Tenant(org.id, user.id, project.id, [q.id for q in queries], api_key, "")
    tenant.token = auth.issue_token(tenant.user_id, tenant.org_id)
    return tenant


class WorkerProcess:
    """A real ``celery worker`` subprocess with its own environment."""

    kind = "worker"
    ready_line = b" ready."  # what the process logs once it takes work

    def __init__(
        self,
        env: dict[str, str],
        concurrency: int,
        log_path: Path,
        queues: tuple[str, ...] = ALL_QUEUES,
    ) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "worker",
                "worker",
                "--queues",
                ",".join(queues),
                "--pool",
                "threads",
                "--concurrency",
                str(concurrency),
                "--hostname",
                self.name,
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log_tail = self.log_path.read_text()[-3000:]
                raise RuntimeError(f"{self.kind} exited early:\n{log_tail}")
            if self.ready_line in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.kind} not ready:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no chance to ack or requeue anything."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


# Text log lines: "[2026-11-24 22:05:28,123: ERROR/MainProcess] ..."
ERROR_LINE = re.compile(rb"^\[[^\]]*: (?:ERROR|CRITICAL)/[^\]]*\].*$", re.MULTILINE)


def json_log_lines(log: bytes) -> list[dict[str, Any]]:
    """The JSON log records of a log (JOBYARD_LOG_FORMAT=json, the default); other lines
    (Celery's start-up banner) are skipped."""
    records = []
    for line in log.splitlines():
        if line.startswith(b"{"):
            record = json.loads(line)
            assert isinstance(record, dict), line
            records.append(record)
    return records


def log_messages(log: bytes) -> bytes:
    """The log's lines with each JSON record reduced to its message (Celery's records
    repeat a task's return value in a ``data`` field: a search of the raw line would
    count it twice)."""
    return b"\n".join(
        json.loads(line)["message"].encode() if line.startswith(b"{") else line
        for line in log.splitlines()
    )


def unexpected_errors(log: bytes, allowed: tuple[str, ...] = ()) -> list[str]:
    """The ERROR/CRITICAL lines of a worker log (text or JSON) that match none of
    ``allowed`` (regexes)."""
    lines = [m.group(0).decode(errors="replace") for m in ERROR_LINE.finditer(log)]
    lines += [
        json.dumps(r, ensure_ascii=False)
        for r in json_log_lines(log)
        if r.get("level") in ("ERROR", "CRITICAL")
    ]
    return [line for line in lines if not any(re.search(a, line) for a in allowed)]


class SenderProcess(WorkerProcess):
    """A real webhook sender subprocess (``jobyard sender``, the Procfile's ``sender``)."""

    kind = "sender"
    ready_line = b"webhook sender ready"

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.name = "sender"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared.webhooks.process"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def running_sender(
    tmp_path: Path, allowed_errors: tuple[str, ...] = (), name: str = "sender", **env: Any
) -> Iterator[SenderProcess]:
    """Run a webhook sender process for the block (several may run at once: ``name``
    tells their logs apart); fails the test if it logged an unexpected ERROR."""
    sender = SenderProcess({k: str(v) for k, v in env.items()}, tmp_path / f"{name}.log")
    try:
        sender.wait_ready()
        yield sender
    finally:
        sender.stop()
    errors = unexpected_errors(sender.log_path.read_bytes(), allowed_errors)
    assert not errors, "the sender logged errors:\n" + "\n".join(errors[:20])


@contextmanager
def running_worker(
    tmp_path: Path,
    concurrency: int = 16,
    allowed_errors: tuple[str, ...] = (),
    queues: tuple[str, ...] = ALL_QUEUES,
    with_sender: bool | None = None,
    **env: Any,
) -> Iterator[WorkerProcess]:
    """Start a worker with extra settings (``JOBYARD_*`` names) and stop it afterwards
    (on every queue by default: ``queues`` makes it an execution worker or a dispatcher).
    A worker on every queue comes with a webhook sender process (``with_sender``), as
    ``make up`` runs one beside the workers.

    The test fails if the worker logged an ERROR that ``allowed_errors`` does not expect:
    a duplicate, a stale message or a fault the engine absorbs must not show as an error.
    """
    if with_sender is None:
        with_sender = queues == ALL_QUEUES
    with contextlib.ExitStack() as stack:
        if with_sender:
            stack.enter_context(running_sender(tmp_path, allowed_errors, **env))
        worker = WorkerProcess(
            {k: str(v) for k, v in env.items()}, concurrency, tmp_path / "worker.log", queues
        )
        try:
            worker.wait_ready()
            yield worker
        finally:
            worker.stop()
        errors = unexpected_errors(worker.log_path.read_bytes(), allowed_errors)
        assert not errors, "the worker logged errors:\n" + "\n".join(errors[:20])


# Four models of four providers: a trigger of R runs over Q queries is 4 x Q x R executions.
FOUR_MODELS = ["gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash", "sonar"]

# What kombu logs, at ERROR and CRITICAL, while the broker is away: expected where a test
# takes Redis away.
REDIS_OUTAGE_ERRORS = (
    r"Couldn't ack",
    r"consumer: Cannot connect to",
    r"Connection to broker lost",
    r"Error while reading from",
)


def trigger_runs(client: Any, tenant: Tenant, runs: int, models: list[str] = FOUR_MODELS) -> str:
    """Trigger a run of every query of the tenant's project on ``models``, ``runs`` times
    each, through the API's test client; the job's id."""
    response = client.post(
        "/api/jobs/trigger",
        headers=tenant.headers(),
        json={"aiModels": models, "executionCount": runs},
    )
    assert response.status_code == 201, response.json
    job_id: str = response.json["id"]
    return job_id


def remove_all_jobs(session: Session) -> None:
    """Delete every job, execution and worker heartbeat row, with every row that refers to
    them (PostgreSQL: one TRUNCATE ... CASCADE; SQLite: DELETEs, dependants first)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("TRUNCATE jobs, executions, worker_processes CASCADE"))
        return
    doomed = {"jobs", "executions", "worker_processes"}
    tables = load_every_model().sorted_tables
    for table in tables:  # dependants come after what they refer to
        if any(fk.column.table.name in doomed for fk in table.foreign_keys):
            doomed.add(table.name)
    for table in reversed(tables):
        if table.name in doomed:
            session.execute(table.delete())


def job_row(job_id: uuid.UUID | str) -> Job:
    with session_scope() as session:
        job = session.get(Job, uuid.UUID(str(job_id)))
        assert job is not None
        return job


def wait_for_job(
    job_id: uuid.UUID | str,
    statuses: tuple[str, ...] = ("completed", "failed", "partial_failed", "canceled"),
    timeout: float = 60,
) -> Job:
    """Poll the job row until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        job = job_row(job_id)
        if job.status in statuses:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"job {job_id} is {job.status}: pending={job.pending} retrying={job.retrying} "
                f"success={job.success} failed={job.failed} total={job.total}"
            )
        time.sleep(0.2)


def execution_status_counts(job_id: uuid.UUID | str) -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(
            select(Execution.status, func.count())
            .where(Execution.job_id == uuid.UUID(str(job_id)))
            .group_by(Execution.status)
        ).all()
    return {status: count for status, count in rows}


def assert_counters_exact(job_id: uuid.UUID | str) -> Job:
    """The job's counters equal its executions' statuses, and sum to the total."""
    job = job_row(job_id)
    counts = execution_status_counts(job_id)
    assert sum(counts.values()) == job.total, (counts, job.total)
    assert {
        "pending": job.pending,
        "retrying": job.retrying,
        "success": job.success,
        "failed": job.failed,
    } == {s: counts.get(s, 0) for s in ("pending", "retrying", "success", "failed")}
    assert job.total == job.pending + job.retrying + job.success + job.failed
    return job


class BeatProcess:
    """A real ``celery beat`` subprocess (its schedule file in a temporary folder)."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.log_path = tmp_path / "beat.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "worker",
                "beat",
                "--schedule",
                str(tmp_path / "celerybeat-schedule"),
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@contextmanager
def running_beat(tmp_path: Path, **env: Any) -> Iterator[BeatProcess]:
    """Run celery beat (the recovery sweep's clock) for the block."""
    beat = BeatProcess({k: str(v) for k, v in env.items()}, tmp_path)
    try:
        yield beat
    finally:
        beat.stop()


def leased_executions(job_id: uuid.UUID | str) -> int:
    """Executions of the job that a worker holds right now (a live lease)."""
    from shared.models import utcnow

    with session_scope() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Execution)
                .where(
                    Execution.job_id == uuid.UUID(str(job_id)),
                    Execution.lease_expires_at > utcnow(),
                    Execution.status.in_(("pending", "retrying")),
                )
            )
            or 0
        )


class RedisServer:
    """A ``redis-server`` of the test's own, on a free port, that it may kill and restart."""

    def __init__(self, tmp_path: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.dir = tmp_path
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: everything queued or unacknowledged in it is gone (no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def flushall(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it is true, else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_api(tmp_path: Path, *, port: int | None = None, **env: Any) -> Iterator[str]:
    """The real API as ``make up`` runs it (the Procfile's ``web`` line: gunicorn with
    deploy/gunicorn.conf.py), one process, on a free loopback port; yields its base URL
    once ``/healthz`` answers there. Its log is ``tmp_path / "web.log"``.

    Extra settings go to its environment and win over these defaults (a None removes
    one): ``BIND=None`` with ``port`` lets gunicorn's config bind the addresses itself
    (``port`` is then the one waited on and yielded)."""
    import httpx

    from tests.bench.infra import procfile_command

    port = port or free_port()
    log_path = tmp_path / "web.log"
    environment = {
        **os.environ,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = str(value)
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            procfile_command("web"), cwd=ROOT, env=environment, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.2)
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def uncredentialed_path(family: Any, families: list[Any]) -> str:
    """A path of ``family``'s for a request with no credential: under its first prefix
    plus ``/x``, unless another family shares that path (``/v1/jobs/x`` is Valpay's and
    super.AI's: the credential decides there), then the prefix itself."""
    path: str = family.url_prefixes[0].rstrip("/") + "/x"
    shared = any(path.startswith(p) for f in families for p in f.keyed_prefixes)
    return family.url_prefixes[0].rstrip("/") if shared else path


def fail_every_execution(job_id: uuid.UUID | str, error: str = "HTTP 400: refused") -> int:
    """Fan the job out and end each of its executions failed (an attempt each, no retry):
    a finished, failed job without a worker. Returns how many failed."""
    job_id = uuid.UUID(str(job_id))
    fan_out_job(job_id)
    with session_scope() as session:
        ids = list(session.scalars(select(Execution.id).where(Execution.job_id == job_id)))
    with connection_scope() as connection:
        claims = claim_group(connection, ids, "test-failer")
    with connection_scope() as connection:
        finish_batch(connection, [(c, Outcome.failed(error)) for c in claims])
    return len(claims)
