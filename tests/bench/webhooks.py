"""(w) callbacks, through the Procfile's processes (dispatcher, execution workers, and the
webhook ``sender``) to loopback receivers on the same machine (same clock):

- a batch with a callback per input: inputs/s end to end, sends/s, the delay from a data
  point finishing (its ``finished_at``) to its callback arriving (p50/p99/max), and from
  the batch completing (the job's ``finished_at``) to the last callback (the batch's own);
  every callback's signature is checked against the organisation's secret;
- the sender alone: callbacks already due (a data point's callback each, with its
  response), sent by the ``sender`` process(es) and nothing else: CPU ms per callback in
  the sender (the robust figure on a shared machine) and in the receiver, sends/s;
- fairness: another tenant's small batch while one receiver hangs (30 s answers) behind
  30,000 of its tenant's due callbacks: that batch's callbacks' delay from finish.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from sqlalchemy import insert

from shared.db import session_scope
from shared.engine.jobs import new_job
from shared.models import utcnow
from shared.webhooks.messages import MessageState
from shared.webhooks.models import WebhookMessage
from shared.webhooks.receivers import origin_of
from shared.webhooks.secrets import signing_secrets
from tests.bench.infra import BenchWorker, CpuMeter, libpq_url
from tests.bench.scenarios import BenchContext, _profile, wait_terminal
from tests.support import Tenant, assert_counters_exact, make_tenant
from tests.webhook_signatures import SignatureRefused, verify

HANGING_SECONDS = 30.0


class _Receiver:
    """Records each callback's arrival (and its headers and body, to verify after);
    ``hang`` holds every request that long before answering."""

    def __init__(self, hang: float = 0.0) -> None:
        self.arrivals: dict[str, float] = {}  # data point id -> arrival (epoch seconds)
        self.batch_at: float | None = None
        self.signed: list[tuple[dict[str, str], bytes]] = []
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                now = time.time()
                body = json.loads(raw)
                with receiver.lock:
                    receiver.requests += 1
                    receiver.signed.append((dict(self.headers.items()), raw))
                    if body.get("entityType") == "batch":
                        receiver.batch_at = now
                    elif "id" in body:
                        receiver.arrivals.setdefault(body["id"], now)
                if hang:
                    time.sleep(hang)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def unsigned(self, secrets: list[str]) -> int:
        """How many requests no current secret of the organisation signed."""
        refused = 0
        for headers, body in self.signed:
            for secret in secrets:
                try:
                    verify(secret, headers, body)
                    break
                except SignatureRefused:
                    continue
            else:
                refused += 1
        return refused

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _start_processes(
    ctx: BenchContext, tag: str, processes: int, senders: int = 1
) -> list[BenchWorker]:
    extra = {"JOBYARD_ALLOW_PRIVATE_URLS": "true"}
    started = [ctx.start(f"{tag}-dispatcher", 0, "dispatcher", extra_env=extra)]
    try:
        for i in range(senders):
            started.append(ctx.start(f"{tag}-sender-{i}", 0, "sender", extra_env=extra))
        for i in range(processes):
            started.append(ctx.start(f"{tag}-worker-{i}", 0, "worker", extra_env=extra))
    except BaseException:
        for worker in started:
            worker.stop()
        raise
    return started


def _submit(client: Any, tenant: Tenant, n: int, url: str, label: str) -> str:
    response = client.post(
        f"/v1/apps/{tenant.project_id}/jobs",
        headers={"API-KEY": tenant.api_key},
        json={"inputs": [{"text": f"{label} {i}"} for i in range(n)], "callbackUrl": url},
    )
    assert response.status_code == 200, response.get_json()
    batch_id: str = response.get_json()["batchId"]
    return batch_id


def _finish_times(conn: psycopg.Connection[Any], batch_id: str) -> tuple[dict[str, float], float]:
    """Each data point's finish (epoch seconds), and the batch's."""
    finished = dict(
        conn.execute(
            "SELECT id::text, extract(epoch FROM finished_at) FROM executions WHERE job_id = %s",
            (batch_id,),
        ).fetchall()
    )
    (batch_finished,) = conn.execute(
        "SELECT extract(epoch FROM finished_at) FROM jobs WHERE id = %s", (batch_id,)
    ).fetchone() or (0.0,)
    return {k: float(v) for k, v in finished.items()}, float(batch_finished)


def _secrets(tenant: Tenant) -> list[str]:
    with session_scope() as session:
        return [s.secret for s in signing_secrets(session, tenant.org_id, utcnow())]


def run_webhooks(ctx: BenchContext, n: int, processes: int = 2, senders: int = 1) -> dict[str, Any]:
    from api import create_app

    client = create_app().test_client()
    ctx.flush_broker()
    receiver = _Receiver()
    conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
    try:
        workers = _start_processes(ctx, "w", processes, senders)
        try:
            tenant = make_tenant(n_queries=0, name="BenchWebhooks")
            sending = workers[1 : 1 + senders]
            cpu = CpuMeter(
                [w.proc.pid for w in workers[1 + senders :]],
                {
                    "dispatcher": workers[0].proc.pid,
                    **{f"sender{i}": w.proc.pid for i, w in enumerate(sending)},
                },
            )
            with _profile(ctx, "w", sending[0].proc.pid):
                cpu.begin()
                started = time.perf_counter()
                batch_id = _submit(client, tenant, n, receiver.url, "i")
                done = wait_terminal(conn, batch_id, timeout=120 + n / 50)
                deadline = time.perf_counter() + 120
                while (len(receiver.arrivals) < n or receiver.batch_at is None) and (
                    time.perf_counter() < deadline
                ):
                    time.sleep(0.01)
                last = time.perf_counter()
                cpu_seconds = cpu.end()
        finally:
            for worker in workers:
                worker.stop()
        job = assert_counters_exact(batch_id)
        finished, batch_finished = _finish_times(conn, batch_id)
    finally:
        conn.close()
        receiver.close()
    delays = [receiver.arrivals[i] - t for i, t in finished.items() if i in receiver.arrivals]
    first = min(receiver.arrivals.values()) if receiver.arrivals else 0
    last_arrival = max([*receiver.arrivals.values(), receiver.batch_at or 0])
    return {
        "inputs": n,
        "worker_processes": processes,
        "sender_processes": senders,
        "batch_status": job.status,
        "elapsed_s": round(done - started, 3),
        "inputs_per_s": round(n / (done - started), 1),
        "callbacks_received": len(receiver.arrivals),
        "batch_callback_received": receiver.batch_at is not None,
        "requests_unsigned": receiver.unsigned(_secrets(tenant)),
        "sends_per_s": round(receiver.requests / max(last_arrival - first, 1e-9), 1),
        "all_callbacks_s": round(last - started, 3),
        "callback_delay_p50_s": round(_percentile(delays, 50), 3) if delays else None,
        "callback_delay_p99_s": round(_percentile(delays, 99), 3) if delays else None,
        "callback_delay_max_s": round(max(delays), 3) if delays else None,
        "last_callback_after_batch_s": round(last_arrival - batch_finished, 3),
        "cpu_seconds": cpu_seconds,
        # The robust figure on a shared machine: what a callback costs its sender.
        "sender_cpu_ms_per_callback": round(
            1000
            * sum(v for k, v in cpu_seconds.items() if k.startswith("sender"))
            / max(receiver.requests, 1),
            3,
        ),
    }


def run_sender_alone(ctx: BenchContext, n: int, senders: int = 1) -> dict[str, Any]:
    """``n`` data-point callbacks due at once, sent by the sender process(es) alone to a
    loopback receiver: what a callback costs its sender, apart from the workers."""
    ctx.flush_broker()
    receiver = _Receiver()
    try:
        tenant = make_tenant(n_queries=0, name="BenchSenderAlone")
        _due_callbacks(tenant, receiver.url, n, payload=_data_point_payload)
        extra = {"JOBYARD_ALLOW_PRIVATE_URLS": "true"}
        sending = []
        try:
            for i in range(senders):
                sending.append(ctx.start(f"ws-sender-{i}", 0, "sender", extra_env=extra))
            cpu = CpuMeter([], {f"sender{i}": w.proc.pid for i, w in enumerate(sending)})
            # The sender starts sending at once: the window opens at its first request.
            deadline = time.perf_counter() + 30
            while receiver.requests == 0 and time.perf_counter() < deadline:
                time.sleep(0.001)
            cpu.begin()
            first, started = receiver.requests, time.perf_counter()
            with _profile(ctx, "ws", sending[0].proc.pid):
                deadline = started + 60 + n / 100
                while receiver.requests < n and time.perf_counter() < deadline:
                    time.sleep(0.01)
                elapsed = time.perf_counter() - started
                cpu_seconds = cpu.end()
        finally:
            for worker in sending:
                worker.stop()
        unsigned = receiver.unsigned(_secrets(tenant))
    finally:
        receiver.close()
    measured = max(receiver.requests - first, 1)
    sender_cpu = sum(v for k, v in cpu_seconds.items() if k.startswith("sender"))
    return {
        "callbacks": n,
        "sender_processes": senders,
        "callbacks_received": receiver.requests,
        "requests_unsigned": unsigned,
        "elapsed_s": round(elapsed, 3),
        "sends_per_s": round(measured / elapsed, 1),
        "sender_cpu_ms_per_callback": round(1000 * sender_cpu / measured, 3),
        # The receiver is this process's threads (and this process's polling).
        "receiver_cpu_ms_per_callback": round(1000 * cpu_seconds["bench"] / measured, 3),
        "cpu_seconds": cpu_seconds,
    }


def _data_point_payload(i: int) -> dict[str, Any]:
    """A data point's callback as a batch sends it, its response included."""
    point = str(uuid.uuid4())
    return {
        "id": point,
        "uuid": point,
        "state": "COMPLETED",
        "action": "STATE_CHANGE",
        "responseUrl": f"https://jobyard.example/v1/apps/app/jobs/{point}/response",
        "responseIncluded": True,
        "response": {"text": f"input {i}", "answer": "simulated " * 40, "simulated": True},
    }


def _due_callbacks(
    tenant: Tenant,
    url: str,
    count: int,
    payload: Callable[[int], dict[str, Any]] = lambda i: {"n": i},
) -> None:
    """``count`` callbacks of one of the tenant's batches to ``url``, due now (written in
    bulk: the backlog a busy tenant's hanging receiver leaves)."""
    with session_scope() as session:
        job_id = _a_job(session, tenant)
    now, receiver = utcnow(), origin_of(url)
    for start in range(0, count, 5000):
        rows = [
            {
                "id": uuid.uuid4(),
                "organisation_id": tenant.org_id,
                "job_id": job_id,
                "event": "datapoint.finished",
                "url": url,
                "receiver": receiver,
                "payload": payload(i),
                "state": MessageState.SENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for i in range(start, min(start + 5000, count))
        ]
        with session_scope() as session:
            session.execute(insert(WebhookMessage), rows)


def _a_job(session: Any, tenant: Tenant) -> uuid.UUID:
    job = new_job(organisation_id=tenant.org_id, job_type="batch", total=0, payload={})
    session.add(job)
    session.flush()
    job_id: uuid.UUID = job.id
    return job_id


def run_webhooks_fairness(
    ctx: BenchContext, backlog: int = 30_000, n: int = 10, processes: int = 2
) -> dict[str, Any]:
    """Tenant B's batch of ``n`` while tenant A's receiver hangs behind ``backlog`` due
    callbacks: B's delay from each finish to its callback."""
    from api import create_app

    client = create_app().test_client()
    ctx.flush_broker()
    hanging, healthy = _Receiver(hang=HANGING_SECONDS), _Receiver()
    conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
    try:
        busy, other = (
            make_tenant(n_queries=0, name="BenchHangs"),
            make_tenant(n_queries=0, name="BenchOther"),
        )
        _due_callbacks(busy, hanging.url, backlog)
        workers = _start_processes(ctx, "wf", processes)
        try:
            deadline = time.perf_counter() + 30
            while hanging.requests == 0 and time.perf_counter() < deadline:
                time.sleep(0.01)  # the sender is at the hanging receiver
            started = time.perf_counter()
            batch_id = _submit(client, other, n, healthy.url, "other")
            done = wait_terminal(conn, batch_id, timeout=60)
            deadline = time.perf_counter() + 60
            while (len(healthy.arrivals) < n or healthy.batch_at is None) and (
                time.perf_counter() < deadline
            ):
                time.sleep(0.01)
            stuck = hanging.requests
        finally:
            hanging.close()  # its held requests end: the sender stops promptly
            for worker in workers:
                worker.stop()
        finished, batch_finished = _finish_times(conn, batch_id)
    finally:
        conn.close()
        healthy.close()
    delays = [healthy.arrivals[i] - t for i, t in finished.items() if i in healthy.arrivals]
    return {
        "hanging_backlog": backlog,
        "hanging_answer_s": HANGING_SECONDS,
        "hanging_requests_held": stuck,
        "other_inputs": n,
        "elapsed_s": round(done - started, 3),
        "inputs_per_s": round(n / (done - started), 1),
        "other_callbacks_received": len(healthy.arrivals),
        "other_batch_callback_received": healthy.batch_at is not None,
        "other_delay_max_s": round(max(delays), 3) if delays else None,
        "other_last_after_batch_s": round((healthy.batch_at or 0) - batch_finished, 3),
    }
