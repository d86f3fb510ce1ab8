"""(w) a batch with a callback per input: inputs/s end to end, callbacks/s, and the delay
from a data point finishing (its ``finished_at``) to its signed callback arriving at a
loopback receiver (same machine, same clock)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from tests.bench.infra import libpq_url
from tests.bench.scenarios import BenchContext, wait_terminal
from tests.support import assert_counters_exact, make_tenant


class _Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}  # data point id -> arrival (epoch seconds)
        self.batch_at: float | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.time()
                with receiver.lock:
                    if body.get("entityType") == "batch":
                        receiver.batch_at = now
                    else:
                        receiver.arrivals.setdefault(body["id"], now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_webhooks(ctx: BenchContext, n: int, processes: int = 2) -> dict[str, Any]:
    from api import create_app

    client = create_app().test_client()
    ctx.flush_broker()
    receiver = _Receiver()
    extra = {"JOBYARD_ALLOW_PRIVATE_URLS": "true"}
    conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
    try:
        workers = [ctx.start("w-dispatcher", 0, "dispatcher", extra_env=extra)]
        try:
            workers += [
                ctx.start(f"w-worker-{i}", 0, "worker", extra_env=extra) for i in range(processes)
            ]
            tenant = make_tenant(n_queries=0, name="BenchWebhooks")
            started = time.perf_counter()
            response = client.post(
                f"/v1/apps/{tenant.project_id}/jobs",
                headers={"API-KEY": tenant.api_key},
                json={"inputs": [{"text": f"i{i}"} for i in range(n)], "callbackUrl": receiver.url},
            )
            assert response.status_code == 200, response.get_json()
            batch_id = response.get_json()["batchId"]
            done = wait_terminal(conn, batch_id, timeout=120 + n / 50)
            deadline = time.perf_counter() + 120
            while (len(receiver.arrivals) < n or receiver.batch_at is None) and (
                time.perf_counter() < deadline
            ):
                time.sleep(0.05)
            last = time.perf_counter()
        finally:
            for worker in workers:
                worker.stop()
        job = assert_counters_exact(batch_id)
        finished = dict(
            conn.execute(
                "SELECT id::text, extract(epoch FROM finished_at) FROM executions "
                "WHERE job_id = %s",
                (batch_id,),
            ).fetchall()
        )
    finally:
        conn.close()
        receiver.close()
    delays = [
        receiver.arrivals[i] - float(t) for i, t in finished.items() if i in receiver.arrivals
    ]
    first = min(receiver.arrivals.values()) if receiver.arrivals else 0
    last_arrival = max(receiver.arrivals.values()) if receiver.arrivals else 0
    return {
        "inputs": n,
        "worker_processes": processes,
        "batch_status": job.status,
        "elapsed_s": round(done - started, 3),
        "inputs_per_s": round(n / (done - started), 1),
        "callbacks_received": len(receiver.arrivals),
        "batch_callback_received": receiver.batch_at is not None,
        "callbacks_per_s": round(len(receiver.arrivals) / max(last_arrival - first, 1e-9), 1),
        "all_callbacks_s": round(last - started, 3),
        "callback_delay_p50_s": round(_percentile(delays, 50), 3) if delays else None,
        "callback_delay_p99_s": round(_percentile(delays, 99), 3) if delays else None,
        "callback_delay_max_s": round(max(delays), 3) if delays else None,
    }
